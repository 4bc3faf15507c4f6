"""The ``rnnlab`` command.

User errors (bad options, missing files, corrupt checkpoints) print one line ``error: ...`` on
stderr and exit 2, never a traceback; ``rnnlab --debug VERB ...`` shows the traceback.
"""

from __future__ import annotations

import sys

import click

from . import __version__
from .errors import UserError


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
        except (click.ClickException, UserError) as e:
            if debug:
                raise
            msg = e.format_message() if isinstance(e, click.ClickException) else str(e)
            click.echo(f"error: {' '.join(msg.split())}", err=True)
            sys.exit(2)


@click.group(cls=_Group, no_args_is_help=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="rnnlab")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
def main(debug: bool) -> None:
    """rnnlab: see and measure how information and gradients move through time in RNNs,
    LSTMs, GRUs and attention."""


# ---- train / sample / evaluate (rnnlab.train) ----------------------------------------------

# ---- inspect (rnnlab.probes) ---------------------------------------------------------------

# ---- study (rnnlab.studies) ----------------------------------------------------------------
