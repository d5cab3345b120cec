"""The ``sd`` command line: inspect backends, watch and resolve services, register instances."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import click

from sd_core._errors import SDError
from sd_core._secrets import scrub

from ._signals import Interrupted
from .plugins import plugins
from .register import register
from .resolve import resolve
from .run import run
from .watch import watch

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
@click.version_option(package_name="sd-core", prog_name="sd")
def cli(verbose: int) -> None:
    """Client-side service discovery: inspect backends, watch services, register instances."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="sd: %(levelname)s: %(name)s: %(message)s")


for _command in (plugins, watch, resolve, register, run):
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``sd`` command; errors are one line on stderr and a non-zero status."""
    try:
        status = cli.main(args=argv, prog_name="sd", standalone_mode=False)
    except click.UsageError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"sd: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        sys.exit(130)
    except Interrupted as exc:
        sys.exit(128 + exc.signum)
    except (SDError, ValueError, OSError) as exc:
        click.echo(f"sd: error: {scrub(str(exc))}", err=True)
        sys.exit(1)
    sys.exit(status if isinstance(status, int) else 0)
