"""``rnnlab explore``: the explorer page of a trained text run (``rnnlab.explorer``).

Registered on the ``rnnlab`` command group by ``rnnlab.cli``; user errors are that group's one
line ``error: ...`` and exit code 2.
"""

from __future__ import annotations

import click

from .errors import UserError


class _Positions(click.ParamType):
    name = "N|all"

    def convert(self, value, param, ctx):
        if isinstance(value, int) or value == "all":
            return value
        try:
            n = int(value)
        except ValueError:
            n = -1
        if n < 0:
            self.fail(f"{value!r} is neither a number ≥ 0 nor 'all'", param, ctx)
        return n


@click.command("explore")
@click.argument("run", metavar="RUN_DIR|CKPT", type=click.Path(path_type=str))
@click.option("--text", "text_path", type=click.Path(dir_okay=False, path_type=str),
              help="Explore this UTF-8 text file (its first --length tokens).")
@click.option("--prime", default=None,
              help="Explore this text followed by what the model writes after it.")
@click.option("--length", type=click.IntRange(min=2, max=20000), default=2000, show_default=True,
              help="Tokens to explore (with --prime: prime and continuation together). "
                   "Default text: the run's validation text.")
@click.option("--window", type=click.IntRange(min=1), default=256, show_default=True,
              help="Saliency and ‖∂L_s/∂h_t‖: the steps before s they are computed for.")
@click.option("--positions", type=_Positions(), default="512", show_default=True,
              help="Positions s with saliency: all tokens up to this many, else every k-th; "
                   "'all' for every token (slow on long texts).")
@click.option("--temperature", type=click.FloatRange(min=0), default=0.8, show_default=True,
              help="With --prime: the sampling temperature (0 = greedy).")
@click.option("--seed", type=click.IntRange(min=0, max=2**63 - 1), default=0,
              show_default=True, help="With --prime: the seed of the sample.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="The page to write (default: RUN_DIR/explorer.html).")
@click.option("--device", default="cpu", show_default=True, help="auto, cpu or cuda[:i].")
def explore_cmd(run, text_path, prime, length, window, positions, temperature, seed, out,
                device):
    """Write one self-contained HTML page to look inside a text run, token by token: every
    unit's h_t, c_t and gates, the loss at each token, the saliency ‖∂L_s/∂x_t‖ of a clicked
    token s back to the earlier ones, the units most active over a selected span, and
    ‖∂L_s/∂h_t‖ through time. Opens from disk in any browser; no server, no network."""
    from . import console, explorer, runs
    from .data import load_text

    if text_path is not None and prime is not None:
        raise UserError("--text and --prime exclude each other: choose one")
    r = runs.load_run(run, device=runs.resolve_device(device))
    text = load_text(text_path) if text_path is not None else None
    bar: list = []

    def progress(done, total):  # the gradients of the positions: the long part
        if not bar:
            bar.append(console.Progress(total, "explore", unit="position").__enter__())
        bar[0].update(done)

    try:
        path, f = explorer.explore_run(r, text=text, prime=prime, length=length, out=out,
                                       window=window, positions=positions,
                                       temperature=temperature, seed=seed, progress=progress)
    finally:
        if bar:
            bar[0].__exit__(None, None, None)
    sal = (f"saliency at {f['positions']} positions × {f['window']} steps"
           if f["positions"] else "no saliency")
    click.echo(f"explorer: {path}  ({f['tokens']} tokens, {f['units']} units, "
               f"{f['layers']} layer(s); {sal}; {f['bytes'] / 2**20:.1f} MB; "
               f"{f['seconds']:.1f} s)")
