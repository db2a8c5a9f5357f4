"""`gpufabric token create|list|revoke`: workspace tokens, managed on the control plane's machine."""
from __future__ import annotations

import os
import sys

import click

_PASSTHROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@click.command(name="token", context_settings=_PASSTHROUGH)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def token_group(args: tuple[str, ...]) -> None:
    """Create, list and revoke workspace tokens (`python -m gpu_fabric token ...`; options pass through).

    Runs where the fabric's state is (its --data-dir, or its --database), since only an
    operator who can reach that may mint tokens.
    """
    # The SDK never imports the server side: the command runs in the fabric's own entry point.
    os.execv(sys.executable, [sys.executable, "-m", "gpu_fabric", "token", *args])
