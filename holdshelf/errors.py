"""Errors a user can cause and fix. Their messages are shown as-is: one line, no patron data."""

import traceback
from pathlib import Path


class HoldshelfError(Exception):
    """Base class for every error that is the user's to fix (bad input, wrong state, config)."""


class InvalidInput(HoldshelfError):
    """A barcode, card number, date or option that cannot be accepted; ``field`` names the
    input at fault where the caller's form or JSON has one by that name."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnknownBranch(InvalidInput):
    """A branch id that names no configured branch (typed by staff, sent by an ILS)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="branch")


class InvalidShelfCode(InvalidInput):
    def __init__(self) -> None:
        super().__init__("not a valid shelf code")


class NotFound(HoldshelfError):
    """Nothing active matches (an unknown or ended code, an item with no active hold)."""


class Conflict(HoldshelfError):
    """The request contradicts the hold's state (already picked up, already on the shelf)."""


class ConfigError(HoldshelfError):
    """The instance configuration is missing, unreadable or unsafe."""


class CodesExhausted(HoldshelfError):
    """A branch has no free shelf code left at its code length."""


def unexpected(exc: BaseException) -> str:
    """A bug's type and where it happened, for the log: Holdshelf's own frames (and the
    innermost one) without the message, which may quote what it choked on (an address, a
    statement's parameters). A database error names the driver's error class too."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if _is_ours(f.filename)][-4:]
    if frames and frames[-1] not in ours:
        ours.append(frames[-1])
    places = " < ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(ours))
    kind = type(exc).__name__
    driver = getattr(exc, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's error
    if isinstance(driver, BaseException):
        kind += f" ({type(driver).__module__}.{type(driver).__name__})"
    return kind + (f" at {places}" if places else "")


# The holdshelf package and, beside it in a checkout, printers/ (installed inside the package).
_OURS = (Path(__file__).resolve().parent, Path(__file__).resolve().parent.parent / "printers")


def _is_ours(filename: str) -> bool:
    path = Path(filename).resolve()
    return any(path.is_relative_to(folder) for folder in _OURS)
