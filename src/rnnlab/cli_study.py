"""``rnnlab study``: the notes' claims measured, on this machine's cores or a Ray cluster.

Registered on the ``rnnlab`` command group by ``rnnlab.cli``; user errors are that group's one
line ``error: ...`` and exit code 2. The executors offered are those ``rnnlab.studies.executor``
has registered (``local``, ``ray``), whether or not Ray is installed.
"""

from __future__ import annotations

import click

from .errors import UserError
from .studies.common import PROFILES
from .studies.executor import names as executor_names

_SEED = click.IntRange(min=0, max=2**63 - 1)  # what torch.Generator.manual_seed takes


def profile_of(quick: bool, full: bool, profile: str | None) -> str:
    """One profile from --quick, --full and --profile (which must agree)."""
    flags = {"--quick": "quick" if quick else None, "--full": "full" if full else None,
             f"--profile {profile}": profile}
    asked = {flag: p for flag, p in flags.items() if p}
    if len(set(asked.values())) > 1:
        raise UserError(f"{' and '.join(asked)} exclude each other: choose one")
    return next(iter(asked.values()), "default")


@click.command("study")
@click.argument("name")
@click.option("--quick", is_flag=True,
              help="Tiny budgets, 1-2 seeds, in seconds: checks the plumbing (verdicts not "
                   "meaningful). Same as --profile quick.")
@click.option("--full", is_flag=True,
              help="The budgets and seeds that decide what the default leaves inconclusive "
                   "(slow; see the README). Same as --profile full.")
@click.option("--profile", type=click.Choice(list(PROFILES)), default=None,
              help="quick, default or full (default: default).")
@click.option("--seeds", type=click.IntRange(min=1), default=None,
              help="Seeds per study (default: the profile's; 3 per training claim and 8 for "
                   "the forget bias in the default profile).")
@click.option("--seed", type=_SEED, default=0, show_default=True,
              help="First seed (seeds are SEED, SEED+1, ...).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Runs at once, one torch thread each (default: the machine's cores; on a "
                   "Ray cluster: its CPUs).")
@click.option("--executor", type=click.Choice(executor_names()), default="local",
              show_default=True,
              help="Where the runs execute: local processes, or Ray tasks (pip install "
                   "rnnlab[ray]).")
@click.option("--address", default=None, metavar="ADDR",
              help="With --executor ray: join this cluster ('auto', or ray://host:port) "
                   "instead of starting a local Ray.")
@click.option("--out", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Output folder (default: a new folder under runs/). The same --out again "
                   "resumes: finished runs are cached in its runs/ folders.")
def study_cmd(name: str, quick: bool, full: bool, profile: str | None, seeds: int | None,
              seed: int, workers: int | None, executor: str, address: str | None,
              out: str | None) -> None:
    """Measure the notes' claims: NAME is a study (gradflow, regimes, ...) or 'all'.

    Every run (study × arm × seed) goes to the executor (worker processes, or Ray tasks); each
    claim is judged over the seeds (mean, 95 % interval, holds / does not hold / inconclusive).
    Writes results.json and figures/ (per study, in OUT/NAME/ for 'all') and OUT/report.html."""
    import time
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from . import files, report, rundir, runs, studies

    profile = profile_of(quick, full, profile)
    if name != "all" and name not in studies.names():
        raise UserError(f"unknown study '{name}'; one of: all, {', '.join(studies.names())}")
    if address and executor != "ray":
        raise UserError("--address joins a Ray cluster: use it with --executor ray")
    out_dir = rundir.make_dir(Path(out) if out else runs.new_run_dir(f"study-{name}"))
    t0 = time.perf_counter()
    opts = {"seeds": seeds, "workers": workers, "executor": executor,
            "executor_options": {"address": address} if address else None}
    try:
        if name == "all":
            results = studies.run_all(profile=profile, seed=seed, out=out_dir, **opts)
        else:
            results = {name: studies.run(name, profile=profile, seed=seed, out=out_dir, **opts)}
        path = report.write_report(out_dir, order=studies.names())
    except OSError as e:  # a figure or results.json the disk refused: name where
        raise UserError(f"cannot write {e.filename or f'in {out_dir}'}: {files.why(e)}; what "
                        "was written before is intact") from None
    table = Table(title=f"rnnlab study {name} ({profile})")
    for col in ("study", "claim", "measured (95 % interval)", "verdict"):
        table.add_column(col, overflow="fold")
    colour = {"holds": "green", "does not hold": "red", "inconclusive": "yellow"}
    for sname, doc in results.items():
        for c in doc.get("claims", []):
            v = c.get("verdict", "inconclusive")
            table.add_row(sname, c["id"], report.measured_text(c.get("measured")),
                          f"[{colour.get(v, 'dim')}]{v}")
    Console().print(table)
    if profile == "quick":
        click.echo("quick profile: the verdicts are not meaningful (tiny budgets, 1-2 seeds)")
    click.echo(f"report: {path}  ({time.perf_counter() - t0:.1f} s)")
