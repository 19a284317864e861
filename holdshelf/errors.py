"""Errors a user can cause and fix. Their messages are shown as-is: one line, no patron data."""


class HoldshelfError(Exception):
    """Base class for every error that is the user's to fix (bad input, wrong state, config)."""


class InvalidInput(HoldshelfError):
    """A barcode, card number, date or option that cannot be accepted."""


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
