"""The ``modalens`` command line (typer)."""
