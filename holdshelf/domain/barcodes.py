"""A library's barcode rules: what its patron cards and item barcodes look like.

Item and card barcodes are both 14 digits at most libraries, so a card scanned into the item
field (or the other way round) would otherwise be taken, and the card number kept in clear as
an item barcode. The rules tell the two apart before anything is written.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from holdshelf.domain.inputs import clean_barcode, normalise_card
from holdshelf.errors import InvalidInput

CHECK_DIGITS = ("none", "luhn")
ITEM, CARD = "item barcode", "patron card"
LOOKS_LIKE = {
    ITEM: "this looks like a patron card, not an item barcode",
    CARD: "this looks like an item barcode, not a patron card",
}
# The usual pattern, '^2\d{13}$', read out for a clerk as "14 digits starting with 2".
_SIMPLE_PATTERN = re.compile(r"\^?(\d*)\\d\{(\d+)\}\$?")


# Each digit doubled, less 9 when above 9 (the Luhn check's every second digit).
_DOUBLED = {str(digit): digit * 2 - 9 if digit * 2 > 9 else digit * 2 for digit in range(10)}


def luhn_valid(digits: str) -> bool:
    """The mod-10 (Luhn) check of 14-digit Codabar library barcodes: from the right, every
    second digit doubled (less 9 when above 9), the sum a multiple of ten."""
    if not digits.isascii() or not digits.isdigit() or len(digits) < 2:
        return False
    backwards = digits[::-1]
    total = sum(map(int, backwards[::2])) + sum(_DOUBLED[char] for char in backwards[1::2])
    return total % 10 == 0


@functools.cache  # re's own cache costs a lookup per call; an import checks two per row
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def describe_pattern(pattern: str) -> str:
    simple = _SIMPLE_PATTERN.fullmatch(pattern)
    if simple is None:
        return f"the form {pattern}"
    prefix, count = simple.group(1), int(simple.group(2))
    starting = f" starting with {prefix}" if prefix else ""
    return f"{len(prefix) + count} digits{starting}"


@dataclass(frozen=True)
class BarcodeRules:
    """Patterns a whole (normalised) card or item barcode must match ("" = any), and the
    check digit both carry."""

    card_pattern: str = ""
    item_pattern: str = ""
    check_digit: str = "none"

    def __post_init__(self) -> None:
        if self.check_digit not in CHECK_DIGITS:
            raise ValueError(f"check_digit must be one of {', '.join(CHECK_DIGITS)}")
        for key in ("card_pattern", "item_pattern"):
            try:
                re.compile(getattr(self, key))
            except re.error as exc:
                raise ValueError(f"{key} is not a regular expression: {exc}") from None

    def _fault(self, value: str, pattern: str) -> str | None:
        """What is wrong with ``value`` under ``pattern`` and the check digit, if anything."""
        if pattern and _compiled(pattern).fullmatch(value) is None:
            return f"should be {describe_pattern(pattern)}"
        if self.check_digit == "luhn" and not luhn_valid(value):
            return "has a wrong check digit: scan it again"
        return None

    def is_card(self, value: str) -> bool:
        """Whether ``value`` passes a card rule the library has (False without one)."""
        try:
            card = normalise_card(value)
        except InvalidInput:
            return False
        return bool(self.card_pattern) and self._fault(card, self.card_pattern) is None

    def is_item(self, value: str) -> bool:
        return bool(self.item_pattern) and self._fault(value, self.item_pattern) is None

    def card(self, raw: str | None) -> str:
        """The normalised card, or InvalidInput saying what was expected."""
        card = normalise_card(raw)
        fault = self._fault(card, self.card_pattern)
        if fault is not None:
            raise InvalidInput(LOOKS_LIKE[CARD] if self.is_item(card) else f"the {CARD} {fault}")
        return card

    def item(self, raw: str | None) -> str:
        """The cleaned item barcode, or InvalidInput saying what was expected."""
        item = clean_barcode(raw)
        fault = self._fault(item, self.item_pattern)
        if fault is not None:
            raise InvalidInput(LOOKS_LIKE[ITEM] if self.is_card(item) else f"the {ITEM} {fault}")
        return item
