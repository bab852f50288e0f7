"""When to draw progress bars: on a terminal, not in logs.

A tqdm bar redraws itself with ``\\r``: on a terminal that is one moving line, in a log
file or a CI transcript it is thousands of joined lines (92 KB for one ``modalens train``).
Every long-running part of modalens takes ``progress``: ``True`` draws bars, ``False``
draws none, and ``None`` (the default wherever a person may be watching) draws them
only when stderr is a terminal. The CLI's ``--progress/--no-progress`` sets it; without
either, logs get the command's one-line summary and no bars.
"""

from __future__ import annotations

import sys


def on_terminal(stream=None) -> bool:
    """Whether ``stream`` (default: the current stderr, where bars go) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # closed, or not a real file
        return False


def show_progress(progress: bool | None = None) -> bool:
    """``progress`` as given, or, for ``None``, whether stderr is a terminal."""
    return on_terminal() if progress is None else bool(progress)
