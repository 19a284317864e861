"""Pseudonymous shelf codes.

A shelf code is a hashids encoding of a number drawn with :mod:`secrets`, followed by one check
character. It is never derived from a patron, an item or a row id, so two holds of one patron get
unrelated codes and a code says nothing about whose hold it is.

Alphabet: upper-case consonants and digits without look-alikes (0/O, 1/I/L, 2/Z, 5/S, 8/B) and
without vowels (A E I O U, and Y), so codes cannot spell words.

Check character: a weighted sum modulo the prime 23 over the characters' positions in the
alphabet, weights 1..n. Because 23 is prime and the weights are distinct and non-zero, every
single-character substitution and every swap of two adjacent, different characters changes the
sum, so such a typo is always rejected instead of finding another patron's hold. The alphabet has
21 symbols, so the two check values 21 and 22 have no symbol: numbers whose check would need one
are simply not issued (about 9% of draws are redrawn).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from hashids import Hashids

from holdshelf.errors import CodesExhausted, InvalidShelfCode

ALPHABET = "CDFGHJKMNPQRTVWX34679"
CHECK_MODULUS = 23  # prime, larger than the alphabet
MIN_LENGTH = 6
MAX_LENGTH = 10  # < CHECK_MODULUS, so every weight stays distinct and non-zero
DEFAULT_LENGTH = 6
# Kept out even though vowels are excluded; matched anywhere in the code.
BLOCKLIST = frozenset(
    {"CNT", "DCK", "FCK", "FGT", "FKN", "KKK", "NGGR", "NGR", "PRN", "WTF", "XXX", "666"}
)
# Separators people type or scanners send between the groups.
_SEPARATORS = re.compile(r"[\s\-‐-―_.]+")
_VALUE = {symbol: index for index, symbol in enumerate(ALPHABET)}


def check_value(body: str) -> int:
    """The check value for ``body``: what makes the weighted sum of body + check zero mod 23."""
    weighted = sum(weight * _VALUE[ch] for weight, ch in enumerate(body, start=1))
    check_weight = len(body) + 1
    return (-weighted * pow(check_weight, -1, CHECK_MODULUS)) % CHECK_MODULUS


def has_valid_check(compact: str) -> bool:
    total = sum(weight * _VALUE[ch] for weight, ch in enumerate(compact, start=1))
    return total % CHECK_MODULUS == 0


def normalise(text: str) -> str:
    """Upper-case, without spaces and group separators: what a scanner or a patron may type."""
    return _SEPARATORS.sub("", text).upper()


def is_blocked(compact: str) -> bool:
    return any(word in compact for word in BLOCKLIST)


@dataclass(frozen=True, order=True)
class ShelfCode:
    """A shelf code in compact form (``K7Q4MX``). Orders as it is shelved."""

    compact: str

    @property
    def display(self) -> str:
        """Two groups, easier to read aloud and to find on the shelf: ``K7Q-4MX``."""
        half = len(self.compact) // 2
        return f"{self.compact[:half]}-{self.compact[half:]}"

    @property
    def section(self) -> str:
        """Where on the shelf the item lives: the code's first character."""
        return self.compact[0]

    def __str__(self) -> str:
        return self.display


@dataclass(frozen=True)
class ShelfCodec:
    """Issues and parses the codes of one branch (the salt is the instance's, the length the
    branch's)."""

    salt: str
    length: int = DEFAULT_LENGTH

    def __post_init__(self) -> None:
        if not MIN_LENGTH <= self.length <= MAX_LENGTH:
            raise ValueError(f"code length must be {MIN_LENGTH}..{MAX_LENGTH}, not {self.length}")

    @cached_property
    def _hashids(self) -> Hashids:
        return Hashids(salt=self.salt, min_length=self.length - 1, alphabet=ALPHABET)

    @cached_property
    def space(self) -> int:
        """How many numbers encode to exactly ``length - 1`` characters: they are drawn from
        ``range(space)``. Found by bisection because hashids keeps its effective base private."""
        low, high = 1, len(ALPHABET) ** (self.length - 1)
        while low < high:
            mid = (low + high + 1) // 2
            if len(self._hashids.encode(mid - 1)) == self.length - 1:
                low = mid
            else:
                high = mid - 1
        return low

    def encode(self, number: int) -> ShelfCode | None:
        """The code for ``number``, or None where it has no check symbol or is blocklisted."""
        body = self._hashids.encode(number)
        check = check_value(body)
        if check >= len(ALPHABET):
            return None
        compact = body + ALPHABET[check]
        return None if is_blocked(compact) else ShelfCode(compact)

    def draw(
        self, randbelow: Callable[[int], int] = secrets.randbelow, attempts: int = 1000
    ) -> ShelfCode:
        """A fresh random code. Uniqueness among a branch's holds is the database's job."""
        for _ in range(attempts):
            code = self.encode(randbelow(self.space))
            if code is not None:
                return code
        raise CodesExhausted("could not draw a shelf code")  # only with a rigged randbelow

    def parse(self, text: str) -> ShelfCode:
        """The code a person typed or scanned, or :class:`InvalidShelfCode`."""
        compact = normalise(text)
        if (
            len(compact) != self.length
            or any(ch not in _VALUE for ch in compact)
            or not has_valid_check(compact)
            or len(self._hashids.decode(compact[:-1])) != 1
        ):
            raise InvalidShelfCode()
        return ShelfCode(compact)

    def decode(self, code: ShelfCode) -> int:
        """The number a valid code encodes."""
        (number,) = self._hashids.decode(code.compact[:-1])
        return number
