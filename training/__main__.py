"""`python -m training`: train models into the BentoML store, list them, promote one.

    python -m training all [--quick] [--data PATH.csv]
    python -m training fraud risk-flag
    python -m training promote fraud [--version V] [--force] [--prometheus URL [--window 1h]]
    python -m training shadow fraud --version V | --off
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


def family_of(name: str) -> ModuleType:
    """The family module that trains a public model name, `training.<spec.family>` (imported
    only when needed)."""
    return importlib.import_module(f"training.{SPECS[name].family}")


train_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                        help="Train models into the BentoML model store.")
promote_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                          help="Promote a model version to production.")
list_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                       help="List stored versions, production and shadow ones.")
shadow_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                         help="Name (or clear) a model's shadow candidate.")
SUBCOMMANDS = {"promote": promote_app, "list": list_app, "shadow": shadow_app}


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
    prometheus: Annotated[str | None, typer.Option(
        help="Prometheus base URL: also print the candidate's live shadow agreement and live "
        "quality (when feedback exists) beside the held-out comparison.")] = None,
    window: Annotated[str, typer.Option(
        help="Prometheus range for the live figures (30m, 1h, 7d...).")] = "1h",
) -> None:
    """Make a version production only if its held-out metric beats production's.

    Live figures (--prometheus) are printed for the person deciding, never used to decide:
    live outcomes are late and sparse, the held-out split is not.
    """
    from riskserve.core import candidates, store
    from training import live

    if prometheus is not None:
        try:
            live.check_window(window)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--window") from None
    result = store.promote(name, version, force)
    cur = "none" if result.current_value is None else f"{result.current_value:.4f}"
    console.print(f"{name}: candidate {result.candidate} {result.metric}="
                  f"{result.candidate_value:.4f}; production {result.current or '-'} "
                  f"{result.metric}={cur}")
    if prometheus is not None:
        _print_live(name, result.candidate, result.current, prometheus, window)
    if not result.promoted:
        console.print(f"[yellow]not promoted[/]: {result.reason}")
        raise typer.Exit(1)
    console.print(f"[green]promoted[/] {name}:{result.candidate} ({result.reason}); "
                  f"history: {store.history_file()}")
    if candidates.pointed(name) == result.candidate:
        # The promoted version was the shadow candidate: it cannot shadow itself any more.
        candidates.set_shadow(name, None, reason=f"promoted {result.candidate} to production")
        console.print(f"shadow of {name} cleared: its candidate is production now")


def _print_live(name: str, candidate: str, production: str | None, url: str,
                window: str) -> None:
    """The live lines, or one line saying why there are none (never a traceback)."""
    from riskserve.core import store
    from training import live

    heldout = {v: live.heldout_of(store.get_version(name, v))
               for v in (candidate, production) if v is not None}
    prom = live.Prometheus(url)
    try:
        for line in live.report(prom, SPECS[name], candidate, production, window, heldout):
            console.print(line, highlight=False)
    except live.PrometheusUnavailable as exc:
        console.print(f"[yellow]live figures skipped[/]: {exc}; the promotion is decided by "
                      "the held-out metric alone", highlight=False)
    finally:
        prom.close()


@shadow_app.command()
def shadow(
    name: Annotated[str, typer.Argument(help="Model whose candidate to name or clear.")],
    version: Annotated[str | None, typer.Option(
        help="Stored version to score beside production on live traffic.")] = None,
    off: Annotated[bool, typer.Option("--off", help="Stop shadowing this model.")] = False,
) -> None:
    """Name the version the service scores on production rows after answering (or --off).

    The service reads the pointer when it starts: restart it (or rebuild the Bento) to apply.
    """
    from riskserve.core import candidates, store

    if (version is None) == (not off):
        raise typer.BadParameter("give exactly one of --version V or --off")
    change = candidates.set_shadow(name, None if off else version)
    if not change.changed:
        console.print(f"{name}: shadow already {change.new or 'off'}; nothing changed")
        return
    console.print(f"{name}: shadow {change.old or 'off'} -> {change.new or 'off'} "
                  f"(production {store.production_version(name)}); restart the service to "
                  f"apply; history: {candidates.history_file()}", highlight=False)


@list_app.command("list")
def list_models() -> None:
    """Every stored version with its primary metric and the runtime it serves with;
    production and shadow are marked."""
    from riskserve.core import candidates, store

    table = Table("model", "version", "metric", "trained_at", "production", "shadow", "runtime")
    for name, spec in SPECS.items():
        versions = store.list_versions(name)
        prod = store.production_version(name) if versions else None
        cand = candidates.shadow_version(name) if versions else None
        for m in versions:
            meta = m.info.metadata
            value = meta.get("metrics", {}).get(spec.primary_metric, float("nan"))
            table.add_row(name, str(m.tag.version), f"{spec.primary_metric}={value:.4f}",
                          str(meta.get("trained_at")), "*" if m.tag.version == prod else "",
                          "*" if m.tag.version == cand else "",
                          # versions saved before compiled inference serve their framework
                          str(meta.get("runtime") or meta.get("framework", "?")))
    Console(width=None if sys.stdout.isatty() else 140).print(table)


def main(argv: list[str] | None = None) -> int:
    """Dispatch; every user-facing failure ends in one line and a non-zero exit."""
    argv = sys.argv[1:] if argv is None else argv
    app, args = train_app, argv
    if argv and argv[0] in SUBCOMMANDS:
        app, args = SUBCOMMANDS[argv[0]], argv[1:]
    try:
        # standalone_mode=False hands typer.Exit codes back as the return value.
        code = app(args, prog_name=f"python -m training{'' if app is train_app else ' ' + argv[0]}",
                   standalone_mode=False)
    except RiskserveError as exc:
        console.print(f"[red]error:[/] {exc.message}")
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except (ClickException, typer.TyperException) as exc:  # usage: unknown option, bad value
        # typer >= 0.20 raises its own vendored click's exceptions, not click's.
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        console.print(f"[red]error:[/] {message}", highlight=False)
        return 2
    except (click.Abort, typer.Abort):
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
