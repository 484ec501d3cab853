"""Write the generated dashboards and the Helm chart's copies of them and of the rules file.

    .venv/bin/python grafana/generate.py           # (re)write every generated file
    .venv/bin/python grafana/generate.py --check   # exit 1 if a committed file is stale

Outputs: grafana/dashboards/<uid>.json, the same bytes under helm/riskserve/files/dashboards/,
and helm/riskserve/files/riskserve.rules.yaml, a byte-for-byte copy of
grafana/rules/riskserve.rules.yaml (the source of truth, edited by hand).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, Python puts grafana/ (not the repository) on sys.path; the dashboards import
# the `grafana` package and the model contract in `riskserve`.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from grafana import model_health, overview  # noqa: E402

RULES = ROOT / "grafana" / "rules" / "riskserve.rules.yaml"
HELM_FILES = ROOT / "helm" / "riskserve" / "files"
DASHBOARD_DIRS = (ROOT / "grafana" / "dashboards", HELM_FILES / "dashboards")
HELM_RULES = HELM_FILES / "riskserve.rules.yaml"
BUILDERS: tuple[Callable[[], dict[str, Any]], ...] = (overview.build, model_health.build)


def render(dashboard: dict[str, Any]) -> bytes:
    """Sorted keys and fixed indentation, so a diff shows only what changed."""
    return (json.dumps(dashboard, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def outputs() -> dict[Path, bytes]:
    """Every generated file and the exact bytes it must hold."""
    files: dict[Path, bytes] = {}
    for build in BUILDERS:
        dashboard = build()
        for directory in DASHBOARD_DIRS:
            files[directory / f"{dashboard['uid']}.json"] = render(dashboard)
    files[HELM_RULES] = RULES.read_bytes()
    return files


def stale(expected: dict[Path, bytes]) -> list[Path]:
    """Generated files that are missing or differ, and dashboards no generator writes any more."""
    differ = [
        path for path, data in expected.items() if not path.is_file() or path.read_bytes() != data
    ]
    leftover = [
        path
        for directory in DASHBOARD_DIRS
        for path in sorted(directory.glob("*.json"))
        if path not in expected
    ]
    return differ + leftover


def write(expected: dict[Path, bytes]) -> None:
    for path, data in expected.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)
    # A renamed dashboard must not leave its old JSON behind for the chart to keep shipping.
    for directory in DASHBOARD_DIRS:
        for path in directory.glob("*.json"):
            if path not in expected:
                path.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if any generated file differs from what would be written",
    )
    args = parser.parse_args(argv)
    expected = outputs()
    if args.check:
        bad = stale(expected)
        if bad:
            names = ", ".join(
                str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path) for path in bad
            )
            print(f"generated files are stale: {names}; run grafana/generate.py", file=sys.stderr)
            return 1
        return 0
    write(expected)
    return 0


if __name__ == "__main__":
    sys.exit(main())
