"""The one family of errors a user can cause and act on.

Every mistake a user can make (a bad file, an unknown id, a malformed
request) raises a subclass of :class:`ModalensError`. The edges map the
family once each: the CLI to one line on stderr and exit code 2
(``cli.common.user_errors``), the REST API to an HTTP status with a JSON
``detail`` (``http_status`` below, used by the serving layer). Anything
else that escapes is a bug, and shows as one.
"""

from __future__ import annotations


class ModalensError(Exception):
    """Base of every error a user can act on; ``http_status`` is the answer the REST API gives for it."""

    http_status: int = 400


class NotFoundError(ModalensError, LookupError):
    """An id, model, file or index the user named does not exist."""

    http_status = 404


class InvalidInputError(ModalensError, ValueError):
    """Input that cannot be used as given: malformed, wrong type, out of range."""

    http_status = 422


class PayloadTooLargeError(ModalensError):
    """A body, upload or file over its configured limit (rejected before it is read whole)."""

    http_status = 413


class ForbiddenError(ModalensError, PermissionError):
    """A request the caller's key does not allow, or a path outside the configured roots."""

    http_status = 403


class ConflictError(ModalensError):
    """The request clashes with the current state (a pair leased by someone else, a decision already undone)."""

    http_status = 409


__all__ = ["ModalensError", "NotFoundError", "InvalidInputError", "PayloadTooLargeError", "ForbiddenError", "ConflictError"]
