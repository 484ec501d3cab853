"""`bentoml build` packs the service and exactly the production version of every model."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from riskserve.core import store
from riskserve.core.specs import MODEL_NAMES
from riskserve.devtools.server import BENTOML, REPO


def test_build_packs_exactly_the_production_versions(trained: dict, bentoml_home: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home)}
    build = subprocess.run([str(BENTOML), "build", "--output", "tag"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    tag = [ln for ln in build.stdout.splitlines() if ln.startswith("__tag__:")][-1]
    tag = tag.removeprefix("__tag__:")
    info = subprocess.run([str(BENTOML), "get", tag, "-o", "json"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=True)
    bento = json.loads(info.stdout)
    packed = {m["tag"] for svc in bento["services"] for m in svc["models"]}
    expected = {f"{name}:{store.production_version(name)}" for name in MODEL_NAMES}
    assert packed == expected
    files = {str(p.relative_to(Path(bento_path(bentoml_home, tag)) / "src"))
             for p in (Path(bento_path(bentoml_home, tag)) / "src").rglob("*") if p.is_file()}
    assert "service.py" in files and "riskserve/core/specs.py" in files
    assert not any(f.startswith(("tests/", "training/", ".venv", "riskserve/devtools"))
                   for f in files)
    # The Bento's store has no pointer files: release.json says which version is production.
    release = json.loads((Path(bento_path(bentoml_home, tag)) / "src" / "riskserve"
                          / "release.json").read_text())
    assert {n: r["production"] for n, r in release.items()} == {
        name: store.production_version(name) for name in MODEL_NAMES}


def bento_path(home: Path, tag: str) -> Path:
    name, version = tag.split(":")
    return home / "bentos" / name / version
