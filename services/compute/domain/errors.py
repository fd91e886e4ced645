"""Which failures are the user's (reported with their logs, never retried) and which are passing."""

from __future__ import annotations

from services.kit.errors import Aborted, Unavailable

TRANSIENT = (Aborted, Unavailable)
"""A dependency busy or away: nothing is reported, the work message is redelivered and done again."""


class BuildError(Exception):
    """The user's function cannot be prepared (BUILD_ERROR for a build, EXECUTION_ERROR for a task)."""


class UserError(Exception):
    """The user's code or assets failed the task (EXECUTION_ERROR): an exit status, an output missing or
    malformed, a disabled input."""
