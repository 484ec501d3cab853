"""`bentoml build` packs the service and exactly the production version of every model.

The build runs from a copy of the build context: importing service.py writes
riskserve/release.json, and a server started meanwhile by the other pytest worker (`make test`
runs two) would rewrite the checkout's copy with its own store's versions mid-build.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from riskserve.core import store
from riskserve.core.specs import MODEL_NAMES
from riskserve.devtools.server import BENTOML, REPO


def build_context(dest: Path) -> Path:
    """What bentofile.yaml packs, copied (without a release.json: the build writes its own)."""
    for name in ("service.py", "bentofile.yaml", "requirements.txt"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "riskserve", dest / "riskserve",
                    ignore=shutil.ignore_patterns("__pycache__", "release.json", "*.tmp"))
    return dest


def test_build_packs_exactly_the_production_versions(trained: dict, bentoml_home: Path,
                                                     tmp_path: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home)}
    ctx = build_context(tmp_path)
    build = subprocess.run([str(BENTOML), "build", "--output", "tag"], cwd=ctx, env=env,
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
