"""`python -m training`: train models into the BentoML store, list them, promote one.

    python -m training all [--quick] [--data PATH.csv]
    python -m training fraud risk-flag
    python -m training promote fraud [--version V] [--force]
    python -m training list
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Annotated

import click
import typer
from click.exceptions import ClickException
from rich.console import Console
from rich.table import Table

from riskserve.core.specs import MODEL_NAMES, SPECS
from riskserve.errors import RiskserveError

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
# Wide enough for the results table when output goes to a file or CI log.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)


FAMILY_MODULES = {
    "cyber_threat": "training.cyber_threat",
    "phishing": "training.phishing",
    "keystroke": "training.keystroke",
    "risk_flag": "training.risk_flag",
    "fraud": "training.fraud",
}


def family_of(name: str) -> ModuleType:
    """The family module that trains a public model name (imported only when needed)."""
    return importlib.import_module(FAMILY_MODULES[SPECS[name].family])


train_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                        help="Train models into the BentoML model store.")
promote_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                          help="Promote a model version to production.")
list_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                       help="List stored versions and production ones.")


@train_app.command()
def train(
    names: Annotated[list[str], typer.Argument(
        help=f"Models to train, or 'all'. Known: {', '.join(MODEL_NAMES)}.")],
    data: Annotated[Path | None, typer.Option(
        help="CSV in the real data set's own column layout (one family at a time).")] = None,
    quick: Annotated[bool, typer.Option(help="Small data and fewer trees (tests, demos).")] = False,
    seed: Annotated[int, typer.Option(help="Seed for generators, splits and estimators.")] = 0,
    reports: Annotated[Path, typer.Option(help="Where metrics JSON and plots go.")] = Path(
        "reports/training"),
    missing_only: Annotated[bool, typer.Option(
        help="Skip models that already have a version in the store.")] = False,
) -> None:
    """Train each named model, save a new version, and print its held-out metrics."""
    from training import pipeline

    wanted = list(MODEL_NAMES) if names == ["all"] else names
    unknown = [n for n in wanted if n not in SPECS]
    if unknown:
        raise RiskserveError(f"unknown model(s) {', '.join(unknown)}; "
                             f"known: {', '.join(MODEL_NAMES)} or 'all'")
    if missing_only:
        from riskserve.core import store

        wanted = [n for n in wanted if not store.list_versions(n)]
        if not wanted:
            console.print("every model already has a version in the store; nothing to train")
            return
    fams = {n: family_of(n) for n in wanted}
    if data is not None and len(set(fams.values())) > 1:
        raise RiskserveError("--data holds one data set: name models of one family only")
    table = Table("model", "version", "algorithm", "primary metric", "production", "seconds")
    prepared: dict[str, pipeline.Prepared] = {}
    not_production: list[str] = []
    for name in wanted:
        spec, family = SPECS[name], fams[name]
        start = time.perf_counter()
        with console.status(f"[bold]{name}[/]: loading and validating data"):
            if family.__name__ not in prepared:
                prepared[family.__name__] = pipeline.prepare(family, data, quick, seed)
        with console.status(f"[bold]{name}[/]: training and evaluating"):
            result = pipeline.train(spec, family, prepared[family.__name__], quick=quick,
                                    seed=seed, reports=reports)
        metric = spec.primary_metric
        prod = "yes (first)" if result.promotion and result.promotion.promoted else "no"
        if prod == "no":
            not_production.append(name)
        console.print(f"[green]✓[/] {name}:{result.version} {metric}="
                      f"{result.metrics[metric]:.4f} report: {result.report_dir}")
        table.add_row(name, result.version, result.model.info["algorithm"],
                      f"{metric}={result.metrics[metric]:.4f}", prod,
                      f"{time.perf_counter() - start:.1f}")
    console.print(table)
    if not_production:
        console.print(f"Not in production yet: {', '.join(not_production)}. Compare and "
                      "promote with `python -m training promote <name> --version <version>`.")


@promote_app.command()
def promote(
    name: Annotated[str, typer.Argument(help="Model to promote.")],
    version: Annotated[str | None, typer.Option(help="Version (default: the newest).")] = None,
    force: Annotated[bool, typer.Option(help="Promote even if not better.")] = False,
) -> None:
    """Make a version production only if its held-out metric beats production's."""
    from riskserve.core import store

    result = store.promote(name, version, force)
    cur = "none" if result.current_value is None else f"{result.current_value:.4f}"
    console.print(f"{name}: candidate {result.candidate} {result.metric}="
                  f"{result.candidate_value:.4f}; production {result.current or '-'} "
                  f"{result.metric}={cur}")
    if not result.promoted:
        console.print(f"[yellow]not promoted[/]: {result.reason}")
        raise typer.Exit(1)
    console.print(f"[green]promoted[/] {name}:{result.candidate} ({result.reason}); "
                  f"history: {store.history_file()}")


@list_app.command("list")
def list_models() -> None:
    """Every stored version with its primary metric; production versions are marked."""
    from riskserve.core import store

    table = Table("model", "version", "metric", "trained_at", "production")
    for name, spec in SPECS.items():
        versions = store.list_versions(name)
        prod = store.production_version(name) if versions else None
        for m in versions:
            meta = m.info.metadata
            value = meta.get("metrics", {}).get(spec.primary_metric, float("nan"))
            table.add_row(name, str(m.tag.version), f"{spec.primary_metric}={value:.4f}",
                          str(meta.get("trained_at")), "*" if m.tag.version == prod else "")
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    """Dispatch; every user-facing failure ends in one line and a non-zero exit."""
    argv = sys.argv[1:] if argv is None else argv
    app, args = train_app, argv
    if argv and argv[0] in ("promote", "list"):
        app, args = (promote_app if argv[0] == "promote" else list_app), argv[1:]
    try:
        # standalone_mode=False hands typer.Exit codes back as the return value.
        code = app(args, prog_name=f"python -m training{'' if app is train_app else ' ' + argv[0]}",
                   standalone_mode=False)
    except RiskserveError as exc:
        console.print(f"[red]error:[/] {exc.message}")
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except ClickException as exc:  # usage errors: unknown option, missing argument
        console.print(f"[red]error:[/] {exc.format_message()}")
        return 2
    except click.Abort:
        return 130
    except Exception as exc:
        if os.environ.get("RISKSERVE_DEBUG"):
            raise
        console.print(f"[red]error:[/] {type(exc).__name__}: {exc} "
                      "(set RISKSERVE_DEBUG=1 for the traceback)")
        return 1
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
