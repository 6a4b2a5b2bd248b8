"""The ``maskllp`` command line. It parses arguments and calls the library; nothing else.

Each command group lives in its own module (``validate``, ``synth``, ``stage1``...), imports only
typer at module level and the library inside the command, so ``maskllp --help`` stays instant.
User errors (:class:`maskllp.errors.MaskllpError`) print as ``error: ...`` lines and exit with 2;
set ``MASKLLP_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import os
import sys

import typer

app = typer.Typer(
    name="maskllp",
    help="PD-L1 tumour proportion score (TPS) from IHC cores: masked learning from label "
    "proportions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
train_app = typer.Typer(help="Train stage 1 and stage 2 models.", no_args_is_help=True)
app.add_typer(train_app, name="train")


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        from maskllp import __version__

        typer.echo(__version__)
        raise typer.Exit()


def _register() -> None:
    # Importing a command module registers its commands on ``app`` / ``train_app``; the order
    # here is the order of ``maskllp --help`` (the pipeline's order).
    from maskllp.cli import validate  # noqa: F401, I001
    from maskllp.cli import synth  # noqa: F401
    from maskllp.cli import stage1  # noqa: F401
    from maskllp.cli import stage2  # noqa: F401
    from maskllp.cli import predict  # noqa: F401
    from maskllp.cli import demo  # noqa: F401


_register()


def main() -> None:
    """Console-script entry point: run the app, turn user errors into one-line messages."""
    from maskllp.errors import MaskllpError

    try:
        app()
    except MaskllpError as e:
        if os.environ.get("MASKLLP_DEBUG"):
            raise
        for line in str(e).splitlines() or [type(e).__name__]:
            print(f"error: {line}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
