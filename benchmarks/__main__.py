"""`python -m benchmarks`: see benchmarks/run.py.

The benchmark keeps its own model store (.cache/bench/bentoml, or BENCH_BENTOML_HOME), so it
never trains into or serves from the user's store; BENTOML_HOME must be set before BentoML is
imported, hence here, before anything else.
"""

import os
from pathlib import Path

os.environ["BENTOML_HOME"] = os.environ.get(
    "BENCH_BENTOML_HOME", str(Path(__file__).resolve().parent.parent / ".cache/bench/bentoml"))
os.environ["BENTOML_DO_NOT_TRACK"] = "true"

from benchmarks.run import main

raise SystemExit(main())
