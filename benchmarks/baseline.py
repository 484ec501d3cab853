"""riskserve as of an older commit (`--baseline GIT_REF`), served next to the current checkout.

The ref is checked out once as a detached `git worktree` under .cache/bench/baseline-<sha>
(the KEEP most recently used ones are kept, older ones removed) and served by the same venv,
from the same model store, with cwd = that worktree: `bentoml serve service:RiskServe` then
imports the worktree's service.py and its `riskserve` package (the
working directory comes first on sys.path; the editable install's finder is consulted after
it). Older refs kept their server helper under tests/, so both sides are launched by this
checkout's riskserve/devtools/server.py (its `cwd` names the checkout served): the same env,
ports and private BentoML home.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "bench"
# Baseline worktrees kept (by last use): one per ref compared against piled up otherwise.
KEEP = 3


def resolve(ref: str) -> str:
    """The full commit id of `ref` (a clear error if it names no commit)."""
    out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                         cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"--baseline {ref!r}: not a commit in this repository")
    return out.stdout.strip()


def checkout(ref: str) -> tuple[Path, str]:
    """A worktree of `ref` (created once, reused), and the short commit id it holds."""
    sha = resolve(ref)
    path = CACHE / f"baseline-{sha[:12]}"
    if not (path / "service.py").is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "worktree", "prune"], cwd=REPO, check=True)
        subprocess.run(["git", "worktree", "add", "--force", "--detach", str(path), sha],
                       cwd=REPO, check=True, capture_output=True)
    path.touch()  # its last use, which decides what prune keeps
    prune(KEEP)
    return path, sha[:12]


def prune(keep: int) -> list[Path]:
    """Remove all but the `keep` most recently used baseline worktrees; returns the removed."""
    used = sorted(CACHE.glob("baseline-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in used[keep:]:
        done = subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=REPO,
                              capture_output=True)
        if done.returncode != 0:  # not (or no longer) a registered worktree: just the folder
            shutil.rmtree(old, ignore_errors=True)
    subprocess.run(["git", "worktree", "prune"], cwd=REPO, check=True)
    return used[keep:]
