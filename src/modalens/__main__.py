"""``python -m modalens`` is the ``modalens`` command."""

from .cli.main import app

app()
