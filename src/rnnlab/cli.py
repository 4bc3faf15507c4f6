"""The ``rnnlab`` command.

User errors (bad options, missing files, corrupt checkpoints) print one line ``error: ...`` on
stderr and exit 2, never a traceback; ``rnnlab --debug VERB ...`` shows the traceback.
"""

from __future__ import annotations

import sys

import click

from . import __version__
from .errors import UserError


class _StoppedEarly(BaseException):
    """SIGTERM or SIGHUP before training started (rnnlab.runs handles them from then on)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


_EARLY: dict = {}  # the handlers _stop_early_on_signals replaced, restored on the way out


def _stop_early_on_signals() -> None:
    """Until training starts, SIGTERM/SIGHUP stop the command with one line (not silently)."""
    import signal

    def stop(signum, frame):
        raise _StoppedEarly(signum)

    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        try:
            _EARLY.setdefault(sig, signal.signal(sig, stop))
        except (TypeError, ValueError):  # no such signal here, or not the main thread
            pass


class _Group(click.Group):
    """A click group whose usage errors and UserErrors are one line on stderr, exit code 2."""

    def main(self, args=None, prog_name=None, **extra):
        args = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in args
        try:
            return super().main(args, prog_name=prog_name, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as e:  # bare `rnnlab`: help, not an error
            click.echo(e.ctx.get_help())
            sys.exit(0)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(130)
        except _StoppedEarly as e:
            import signal
            click.echo(f"error: stopped by {signal.Signals(e.signum).name} before training "
                       "started: no checkpoint yet, nothing to resume", err=True)
            sys.exit(128 + e.signum)
        except (click.ClickException, UserError, OSError, MemoryError) as e:
            if debug:
                raise
            if isinstance(e, click.ClickException):
                msg = e.format_message()
            elif isinstance(e, OSError):  # a path the system refused: name it
                from .files import why
                msg = f"{e.filename}: {why(e)}" if e.filename else why(e)
            elif isinstance(e, MemoryError):
                msg = "out of memory; use smaller sizes (--hidden-size, --batch-size, ...)"
            else:
                msg = str(e)
            click.echo(f"error: {' '.join(msg.split())}", err=True)
            sys.exit(2)
        except RuntimeError as e:  # torch's allocators say "out of memory" this way
            if debug or "out of memory" not in str(e) and "can't allocate" not in str(e):
                raise
            first = str(e).strip().splitlines()[0][:200]
            click.echo(f"error: out of memory ({first}); use smaller sizes (--hidden-size, "
                       "--batch-size, ...)", err=True)
            sys.exit(2)
        finally:
            import signal
            while _EARLY:
                sig, handler = _EARLY.popitem()
                signal.signal(sig, handler)


@click.group(cls=_Group, no_args_is_help=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="rnnlab")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
def main(debug: bool) -> None:
    """rnnlab: see and measure how information and gradients move through time in RNNs,
    LSTMs, GRUs and attention."""


# ---- train / sample / evaluate (rnnlab.train, rnnlab.runs) --------------------------------

_TEXT_TASKS = ("shakespeare", "text")
_LENGTH_OPTION = {"shakespeare": "seq_len", "text": "seq_len", "adding": "length",
                  "classify": "length"}  # the task option --seq-len sets
# options that define a run: fixed once it exists, so --resume refuses to change them
_RUN_OPTIONS = ("task", "text_path", "model", "hidden_size", "num_layers", "batch_size",
                "seq_len", "optimizer", "lr", "clip", "dropout", "weight_decay", "forget_bias",
                "init", "warmup", "decay", "tbptt", "eval_every", "checkpoint_every", "seed",
                "tokens", "dtype", "config_path", "out")
_FLAG = {"text_path": "text", "config_path": "config"}  # parameter -> its --flag
# train's options -> (table, key) of a run's config (and of a --config file)
_CONFIG_KEYS = {"task": ("task", "name"), "tokens": ("task", "tokens"),
                "model": ("model", "backbone"), "hidden_size": ("model", "hidden_size"),
                "num_layers": ("model", "num_layers"), "dropout": ("model", "dropout"),
                "forget_bias": ("model", "forget_bias"), "init": ("model", "recurrent_init"),
                **{k: ("train", k) for k in ("batch_size", "optimizer", "lr", "clip",
                                             "weight_decay", "warmup", "decay", "tbptt", "steps",
                                             "eval_every", "checkpoint_every", "seed", "dtype",
                                             "trace_every")}}


def _lazy(module: str, attr: str):
    """A registry of the library (tuple of names), read when the command line is built."""
    import importlib
    return getattr(importlib.import_module(f"rnnlab.{module}"), attr)


_TC = _lazy("train", "TrainConfig")()  # every training default, from the one source
_SEED = click.IntRange(min=0, max=2**63 - 1)  # what torch.Generator.manual_seed takes


@main.command("train")
@click.option("--task", type=click.Choice(_lazy("data", "task_names")()), default="shakespeare",
              show_default=True, help="What to learn (text: your own file, see --text).")
@click.option("--text", "text_path", type=click.Path(dir_okay=False, path_type=str),
              help="A UTF-8 text file to learn (implies --task text).")
@click.option("--model", type=click.Choice(_lazy("backbone", "BACKBONES")), default="lstm",
              show_default=True, help="Backbone.")
@click.option("--hidden-size", type=click.IntRange(min=1), default=None,
              help="Backbone width (default: the model's; 256 for language models).")
@click.option("--num-layers", type=click.IntRange(min=1), default=None,
              help="Stacked layers (default: the model's; 2 for language models).")
@click.option("--batch-size", type=click.IntRange(min=1), default=_TC.batch_size,
              show_default=True)
@click.option("--seq-len", type=click.IntRange(min=1), default=None,
              help="Text: the truncated-BPTT window (default 128); adding, classify: the "
                   "sequence length.")
@click.option("--optimizer", type=click.Choice(_lazy("train", "OPTIMIZERS")),
              default=_TC.optimizer, show_default=True)
@click.option("--lr", type=float, default=_TC.lr, show_default=True, help="Learning rate.")
@click.option("--clip", type=float, default=_TC.clip, show_default=True,
              help="Clip the gradient's global norm to this (0 = off).")
@click.option("--dropout", type=float, default=0.0, show_default=True)
@click.option("--weight-decay", type=float, default=_TC.weight_decay, show_default=True)
@click.option("--forget-bias", type=float, default=None,
              help="LSTM forget-gate bias (e.g. 1.0; default: torch's init).")
@click.option("--init", type=click.Choice(_lazy("backbone", "RECURRENT_INITS")),
              default="default", show_default=True, help="Recurrent weight init.")
@click.option("--warmup", type=click.IntRange(min=0), default=_TC.warmup, show_default=True,
              help="Linear learning-rate warmup steps.")
@click.option("--decay", type=click.Choice(_lazy("train", "DECAYS")), default=_TC.decay,
              show_default=True,
              help="Learning-rate decay after warmup (cosine: to 10% at --steps).")
@click.option("--tbptt", type=click.Choice(_lazy("train", "TBPTT")), default=_TC.tbptt,
              show_default=True,
              help="Text: random windows, or contiguous chunks carrying the state across.")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help=f"Total optimisation steps (default {_TC.steps}; with --resume: the run's).")
@click.option("--time-budget", type=float, default=None, metavar="SECONDS",
              help="Stop (with a checkpoint) after this much training time.")
@click.option("--eval-every", type=click.IntRange(min=1), default=_TC.eval_every,
              show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=_TC.checkpoint_every,
              show_default=True)
@click.option("--trace-every", type=click.IntRange(min=0), default=None, metavar="N",
              help="Record the gradient through time (‖∂L/∂h_t‖, ‖∂L/∂c_t‖, gates) of steps 1, "
                   "N, 2N, ... into telemetry.jsonl (default: off; with --resume: the run's).")
@click.option("--seed", type=_SEED, default=_TC.seed, show_default=True)
@click.option("--tokens", type=click.Choice(_lazy("data", "TOKENS")), default=None,
              help="Text tasks: model characters (default) or words and punctuation.")
@click.option("--dtype", type=click.Choice(_lazy("train", "DTYPES")), default=_TC.dtype,
              show_default=True,
              help="bfloat16: mixed precision (autocast, CPU and CUDA); float64: all double.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=str),
              default=None, metavar="FILE",
              help="Options from a TOML file or a run's config.json; options given here win.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:i].")
@click.option("--out", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Run directory (default: runs/<task>-<model>-<date>-<time>).")
@click.option("--resume", type=click.Path(file_okay=False, path_type=str), default=None,
              metavar="DIR", help="Continue the run in DIR to --steps in total, exactly.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def train_cmd(ctx, task, text_path, model, hidden_size, num_layers, batch_size, seq_len,
              optimizer, lr, clip, dropout, weight_decay, forget_bias, init, warmup, decay,
              tbptt, steps, time_budget, eval_every, checkpoint_every, trace_every, seed, tokens,
              dtype, config_path, device, out, resume, quiet):
    """Train a model (default: a 2-layer char LSTM on Shakespeare) with checkpoints."""
    import math
    from pathlib import Path

    from . import runs

    _stop_early_on_signals()  # train_run takes over (finish the step, checkpoint) once it starts
    if time_budget is not None and not (math.isfinite(time_budget) and time_budget > 0):
        raise UserError(f"--time-budget must be a positive number of seconds, got {time_budget}")
    if resume is not None:
        given = [p for p in _RUN_OPTIONS if ctx.get_parameter_source(p) ==
                 click.core.ParameterSource.COMMANDLINE]
        if given:
            flags = ", ".join("--" + _FLAG.get(p, p).replace("_", "-") for p in given)
            raise UserError(f"{flags} cannot be changed when resuming (the run keeps its own "
                            "settings); only --steps, --time-budget, --trace-every and --device "
                            "may be given")
        runs.resolve_device(device)
        out_dir = Path(resume)
        cfg = None
    else:
        runs.resolve_device(device)
        from . import configfile

        name, merged = configfile.from_command_line(
            ctx.params, lambda p: ctx.get_parameter_source(p) ==
            click.core.ParameterSource.COMMANDLINE, _CONFIG_KEYS, _LENGTH_OPTION, _TC.steps)
        cfg = runs.new_config(name, merged["task"], merged["model"], **merged["train"])
        out_dir = Path(out) if out else runs.new_run_dir(
            f"{name}-{cfg['model'].get('backbone', 'model')}")
    try:
        result = runs.train_run(out_dir, cfg, resume=resume is not None, steps=steps,
                                time_budget=time_budget, device=device, progress=not quiet,
                                trace_every=trace_every)
    except runs.RunDiverged as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    f = result.final
    parts = [f"step {result.step}"]
    if "loss" in f:
        parts.append(f"val loss {f['loss']:.4f}")
    if "bpc" in f:
        parts.append(f"{f['bpc']:.3f} bits/char")
    elif "acc" in f:
        parts.append(f"val acc {f['acc']:.3f}")
    if result.stopped != "steps":
        parts.append(f"stopped: {result.stopped}")
    click.echo(f"run: {result.out}  ({', '.join(parts)})")
    if result.stopped == "interrupted":
        import signal as _signal
        name = _signal.Signals(result.signal or 2).name
        click.echo(f"stopped by {name} at step {result.step}: checkpoint saved "
                   f"({result.checkpoint}); continue with: rnnlab train --resume {result.out}",
                   err=True)
    elif result.stopped == "time":
        click.echo(f"continue with: rnnlab train --resume {result.out}", err=True)
    elif (cfg or {}).get("task", {}).get("name") in _TEXT_TASKS:
        click.echo(f"sample with: rnnlab sample {result.out}", err=True)
    if result.stopped == "interrupted":
        sys.exit(128 + (result.signal or 2))  # 130 for Ctrl-C, 143 for SIGTERM


def _load_for_cli(run: str, device: str):
    from . import runs
    return runs.load_run(run, device=runs.resolve_device(device))


@main.command("sample")
@click.argument("run", metavar="RUN_DIR|CKPT", type=click.Path(path_type=str))
@click.option("--prime", default="", help="Text to start from (default: a new line).")
@click.option("--length", type=click.IntRange(min=0, max=10**7), default=500, show_default=True,
              help="Tokens to generate.")
@click.option("--temperature", type=float, default=0.8, show_default=True,
              help="Softmax temperature (0 = greedy).")
@click.option("--top-k", type=click.IntRange(min=1), default=None,
              help="Sample only among the K most likely tokens.")
@click.option("--top-p", type=float, default=None,
              help="Sample only among the most likely tokens whose probability reaches P.")
@click.option("--num-samples", type=click.IntRange(min=1, max=10**4), default=1,
              show_default=True, help="Independent samples, each after the prime.")
@click.option("--seed", type=_SEED, default=None,
              help="Seed for a repeatable sample (default: a fresh one each time).")
@click.option("--verbose", is_flag=True, help="Print the seed used (to redraw a sample).")
@click.option("--device", default="cpu", show_default=True, help="auto, cpu or cuda[:i].")
def sample_cmd(run, prime, length, temperature, top_k, top_p, num_samples, seed, verbose,
               device):
    """Generate text from a trained text run, after --prime, streamed as it is produced."""
    import secrets

    import torch

    r = _load_for_cli(run, device)
    task_name = r.config.get("task", {}).get("name")
    if r.tokenizer is None or r.config.get("model", {}).get("name") != "lm" \
            or task_name not in _TEXT_TASKS:
        raise UserError(f"{run} is a '{task_name}' run: sampling needs a text run "
                        "(--task shakespeare or --task text)")
    seed = secrets.randbits(63) if seed is None else seed
    if verbose:
        click.echo(f"seed: {seed}", err=True)
    gen = torch.Generator().manual_seed(seed)
    tok = r.tokenizer
    start = prime or ("\n" if "\n" in tok else tok.decode([0]))  # a new line, if it knows one
    ids = tok.encode(start)
    for k in range(num_samples):
        if num_samples > 1:
            click.echo(f"--- sample {k + 1} ---")
        click.echo(prime, nl=False)
        push = tok.decoder(start)  # words: joined to what came before (no space before ",")
        for nxt in r.model.stream(ids, length, temperature, top_k, top_p, gen):
            sys.stdout.write(push(nxt.cpu()))
            sys.stdout.flush()
        click.echo()


@main.command("evaluate")
@click.argument("run", metavar="RUN_DIR|CKPT", type=click.Path(path_type=str))
@click.option("--text", "text_path", type=click.Path(dir_okay=False, path_type=str),
              help="Score this UTF-8 text file (a text run only).")
@click.option("--max-unseen", type=click.FloatRange(0, 1), default=0.10, show_default=True,
              help="With --text: refuse when more than this fraction of its tokens are not "
                   "in the model's vocabulary (they are skipped, not scored).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
@click.option("--batches", type=click.IntRange(min=1, max=10**5), default=20, show_default=True,
              help="Validation batches (without --text).")
@click.option("--device", default="cpu", show_default=True, help="auto, cpu or cuda[:i].")
def evaluate_cmd(run, text_path, max_unseen, as_json, batches, device):
    """Score a run on its validation set, or a text run on --text: loss (nats per token),
    acc, bpc, ppl (the same keys both ways; --text adds the unseen tokens it skipped)."""
    from . import files, runs
    from .data import load_text

    r = _load_for_cli(run, device)
    if text_path is not None:
        if r.tokenizer is None or r.config.get("model", {}).get("name") != "lm":
            raise UserError(f"{run} is not a text run: --text needs a language model with a "
                            "vocabulary (--task shakespeare or text)")
        m = runs.score_text(r, load_text(text_path), max_unseen)
        if m["unseen_tokens"]:
            click.echo(f"note: skipped {m['unseen_tokens']} token(s) the model never saw "
                       f"({m['unseen_fraction']:.1%} of the text)", err=True)
        head = f"{text_path}, step {r.step}"
    else:
        m = runs.evaluate_run(r, batches)
        head = f"{r.task.name} ({r.task.kind}), step {r.step}, {batches} validation batches"
    if as_json:
        click.echo(files.dumps(m))
        return
    click.echo(head)
    for k, v in m.items():
        if isinstance(v, dict):
            click.echo(f"{k:<22}" + "  ".join(f"{d}: {a:.3f}" for d, a in v.items()))
        elif isinstance(v, int):
            click.echo(f"{k:<22}{v}")
        else:
            click.echo(f"{k:<22}{v:.4f}")


@main.command("export")
@click.argument("run", metavar="RUN_DIR|CKPT", type=click.Path(path_type=str))
@click.option("--format", "fmt", type=click.Choice(_lazy("export", "FORMATS")),
              default="torchscript", show_default=True,
              help="onnx needs the onnx extra: pip install \"rnnlab[onnx]\".")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="The file to write.")
def export_cmd(run, fmt, out):
    """Write a run's model as TorchScript or ONNX, checked: it must give the run's logits.

    Input: token ids (B, T) (or features (B, T, F)); output: the logits. The run's config and
    vocabulary travel inside the file (TorchScript: extra file rnnlab.json; ONNX: metadata)."""
    from . import export

    r = _load_for_cli(run, "cpu")
    meta = {"config": r.config, "step": r.step,
            "tokenizer": r.tokenizer.to_dict() if r.tokenizer is not None else None}
    res = export.export(r.model, out, fmt, meta)
    shape = "×".join(map(str, res["checked_on"]))
    click.echo(f"exported: {res['path']} ({fmt}); its logits equal the run's to "
               f"{res['max_abs_diff']:.1e} on a {shape} input")


# ---- inspect (rnnlab.runs, rnnlab.probes) -------------------------------------------------

@main.command("inspect")
@click.argument("path", type=click.Path(path_type=str))
@click.option("--text", type=click.Path(path_type=str), default=None,
              help="Drive the model with this text file (text runs); default: a validation batch.")
@click.option("--seq-len", type=click.IntRange(min=2), default=64, show_default=True,
              help="Steps to probe (synthetic tasks keep their own length).")
@click.option("--batch-size", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--seed", type=_SEED, default=0, show_default=True, help="Seed of the batch.")
@click.option("--no-figures", is_flag=True, help="Do not write RUN_DIR/figures/inspect_*.png.")
def inspect_cmd(path: str, text: str | None, seq_len: int, batch_size: int, seed: int,
                no_figures: bool) -> None:
    """The RNN debugging checklist on a run: PATH is a run directory or a checkpoint .pt.

    Shapes, σ_max(W_hh) per layer, gate saturation, gradient memory length, exploding /
    vanishing and Lyapunov warnings, each marked ok / warn with its number."""
    from rich.console import Console
    from rich.table import Table

    from . import runs
    from .files import why

    try:
        with Console(stderr=True).status("probing the run ..."):
            res = runs.inspect_run(path, text=text, seq_len=seq_len, batch_size=batch_size,
                                   seed=seed, figures=not no_figures)
    except OSError as e:  # the figures could not be written: say where, and how to skip them
        raise UserError(f"cannot write {e.filename or 'the figures'}: {why(e)} "
                        "(--no-figures skips them)") from None
    table = Table(title=f"rnnlab inspect {res['checkpoint']} (step {res['step']})",
                  caption=f"input: {res['input']}")
    for col in ("check", "value", "status", "note"):
        table.add_column(col, overflow="fold")
    for r in res["rows"]:
        status = "[green]ok" if r["status"] == "ok" else "[yellow]warn"
        table.add_row(r["check"], r["value"], status, r["note"])
    Console().print(table)
    warns = sum(r["status"] == "warn" for r in res["rows"])
    click.echo(f"{len(res['rows']) - warns} ok, {warns} warn")
    for f in res["figures"]:
        click.echo(f"figure: {f}")
    if not no_figures and res["run_dir"] is None:
        click.echo("figures: none written (the checkpoint is not inside a run directory)")

# ---- explore (rnnlab.explorer) ----------------------------------------------------------

from .cli_explore import explore_cmd  # noqa: E402  (its own file: the page's many options)

main.add_command(explore_cmd)

# ---- study (rnnlab.studies): its own file, like explore ---------------------------------------

from .cli_study import study_cmd  # noqa: E402

main.add_command(study_cmd)
