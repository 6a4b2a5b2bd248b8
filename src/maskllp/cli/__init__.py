"""The ``maskllp`` command line. It parses arguments and calls the library; nothing else.

Each command group lives in its own module (``validate``, ``synth``, ``stage1``...), imports only
typer at module level and the library inside the command, so ``maskllp --help`` stays instant.
User errors (:class:`maskllp.errors.MaskllpError`) print as ``error: ...`` lines and exit with 2;
set ``MASKLLP_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

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


def _print_version(value: bool) -> None:
    if value:
        from maskllp import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True,
                                 callback=_print_version),
) -> None:
    pass


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


HELD_LOGGERS = ("maskllp", "tifffile", "PIL")
"""Loggers whose warnings are held back like Python warnings (maskllp's own notes, tifffile's notes
on damaged headers), so that an error line stands alone."""


class _Held(logging.Handler):
    """Keeps log records of the libraries for the end of the run."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        name = "" if record.name.split(".")[0] == "maskllp" else f"{record.name}: "
        self.lines.append(name + record.getMessage())


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main() -> None:
    """Console-script entry point: run the app; a user error or a wrong option is one ``error:`` line
    and exit 2. Library warnings and log notes are held: shown as ``warning:`` lines after a run that
    succeeds (each once), dropped after an error so the error line stands alone."""
    from maskllp.errors import MaskllpError

    held = _Held()
    loggers = [logging.getLogger(name) for name in HELD_LOGGERS]
    saved = [(lg.propagate, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(held)
        lg.propagate = False
    code = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            result = app(standalone_mode=False)
            code = result if isinstance(result, int) else 0
        except MaskllpError as e:
            if os.environ.get("MASKLLP_DEBUG"):
                raise
            for line in str(e).splitlines() or [type(e).__name__]:
                print(f"error: {line}", file=sys.stderr)
            code = 2
        except typer.Abort:
            print("error: interrupted", file=sys.stderr)
            code = 130
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            code = 130
        except typer.TyperException as e:  # a wrong option or argument, caught by the parser
            if type(e).__name__ == "NoArgsIsHelpError":
                e.show()
                code = 0
            else:
                ctx = getattr(e, "ctx", None)
                hint = f" (see '{ctx.command_path} -h')" if ctx is not None else ""
                print(f"error: {_one_line(e.format_message())}{hint}", file=sys.stderr)
                code = int(getattr(e, "exit_code", 2) or 2)
        finally:
            for lg, (propagate, level) in zip(loggers, saved, strict=True):
                lg.removeHandler(held)
                lg.propagate, lg.level = propagate, level
    if code == 0:
        notes = [f"{w.category.__name__}: {_one_line(w.message)}" for w in caught] + held.lines
        for note in dict.fromkeys(notes):
            print(f"warning: {note}", file=sys.stderr)
    sys.exit(code)
