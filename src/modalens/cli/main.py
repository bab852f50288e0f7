"""The ``modalens`` command: one typer app; each group of commands lives in its own module.

    catalog_cmds.py   index, search, tag, quickstart
    train_cmd.py      train
    eval_cmd.py       eval, leaderboard
    serve_cmd.py      serve (API + web page)
    export_cmd.py     export (ONNX files for the towers and heads)
    match_cmd.py      match (run, train, eval, review, retrain): product matching with people in the loop

A command is a thin shell over the library; errors a user can fix are printed
as one clear line (exit code 2), never as a traceback (``common.user_errors``).
"""

from __future__ import annotations

import sys

import typer

from .. import __version__
from . import catalog_cmds, eval_cmd, export_cmd, match_cmd, serve_cmd, train_cmd

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="modalens: fashion search, zero-shot tagging and product matching, offline on a CPU.",
)

app.command()(catalog_cmds.index)
app.command()(catalog_cmds.search)
app.command()(catalog_cmds.tag)
app.command()(catalog_cmds.quickstart)
app.command()(train_cmd.train)
app.command("eval")(eval_cmd.evaluate)
app.command()(eval_cmd.leaderboard)
app.command()(serve_cmd.serve)
app.command()(export_cmd.export)
app.add_typer(match_cmd.app, name="match")


@app.command()
def models() -> None:
    """List the models and towers this install can create."""
    from ..encoders import list_image_towers, list_text_towers
    from ..models import DEFAULT_MODEL, list_models

    typer.echo("models:       " + ", ".join(f"{name} (default)" if name == DEFAULT_MODEL else name for name in list_models()))
    typer.echo("image towers: " + ", ".join(list_image_towers()))
    typer.echo("text towers:  " + ", ".join(list_text_towers()))


@app.callback(invoke_without_command=True)
def main(version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    if version:
        typer.echo(f"modalens {__version__}")
        raise typer.Exit()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
