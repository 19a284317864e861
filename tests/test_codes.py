"""Shelf codes: round trips, typo detection, grouping, sections, blocklist."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from holdshelf.domain.codes import (
    ALPHABET,
    BLOCKLIST,
    MAX_LENGTH,
    MIN_LENGTH,
    ShelfCode,
    ShelfCodec,
    has_valid_check,
    normalise,
)
from holdshelf.errors import InvalidShelfCode

SALT = "test-salt-0123456789"
CODECS = {length: ShelfCodec(SALT, length) for length in range(MIN_LENGTH, MAX_LENGTH + 1)}
lengths = st.sampled_from(sorted(CODECS))


@st.composite
def issued_codes(draw: st.DrawFn) -> tuple[ShelfCodec, ShelfCode]:
    codec = CODECS[draw(lengths)]
    number = draw(st.integers(min_value=0, max_value=codec.space - 1))
    code = codec.encode(number)
    if code is None:  # no check symbol, or blocklisted: never issued
        code = codec.draw()
    return codec, code


def test_alphabet_has_no_vowels_or_look_alikes() -> None:
    assert len(set(ALPHABET)) == len(ALPHABET) == 21
    assert not set(ALPHABET) & set("AEIOUY0O1IL2Z5S8B")
    assert ALPHABET.upper() == ALPHABET


@given(issued_codes())
def test_decode_encode_round_trip(case: tuple[ShelfCodec, ShelfCode]) -> None:
    codec, code = case
    assert codec.encode(codec.decode(code)) == code
    assert codec.parse(code.display) == code


@given(st.data())
def test_numbers_round_trip(data: st.DataObject) -> None:
    codec = CODECS[data.draw(lengths)]
    number = data.draw(st.integers(min_value=0, max_value=codec.space - 1))
    code = codec.encode(number)
    if code is not None:
        assert codec.decode(code) == number
        assert len(code.compact) == codec.length


@settings(max_examples=300)
@given(issued_codes(), st.data())
def test_every_single_substitution_is_rejected(case, data: st.DataObject) -> None:
    codec, code = case
    position = data.draw(st.integers(0, codec.length - 1))
    replacement = data.draw(st.sampled_from(ALPHABET.replace(code.compact[position], "")))
    typo = code.compact[:position] + replacement + code.compact[position + 1 :]
    with pytest.raises(InvalidShelfCode):
        codec.parse(typo)


@settings(max_examples=300)
@given(issued_codes(), st.data())
def test_every_adjacent_swap_is_rejected(case, data: st.DataObject) -> None:
    codec, code = case
    position = data.draw(st.integers(0, codec.length - 2))
    a, b = code.compact[position], code.compact[position + 1]
    if a == b:
        return  # swapping equal characters is no typo
    typo = code.compact[:position] + b + a + code.compact[position + 2 :]
    with pytest.raises(InvalidShelfCode):
        codec.parse(typo)


def test_check_character_catches_all_typos_of_a_sample_exhaustively() -> None:
    """Not sampled: every substitution and every adjacent swap of 200 codes."""
    codec = CODECS[6]
    for number in range(0, codec.space, codec.space // 200):
        code = codec.encode(number)
        if code is None:
            continue
        compact = code.compact
        for position, replacement in itertools.product(range(6), ALPHABET):
            if replacement != compact[position]:
                typo = compact[:position] + replacement + compact[position + 1 :]
                assert not has_valid_check(typo)
        for position in range(5):
            if compact[position] != compact[position + 1]:
                swapped = (
                    compact[:position]
                    + compact[position + 1]
                    + compact[position]
                    + compact[position + 2 :]
                )
                assert not has_valid_check(swapped)


def test_hashids_alone_would_let_typos_through() -> None:
    """Why the check character exists: typos of a bare hashid often decode to another id
    (about 8% of single substitutions with this alphabet; every one would be someone's hold)."""
    codec = CODECS[6]
    hashids = codec._hashids
    typos = decodable = 0
    for _ in range(100):
        body = codec.draw().compact[:-1]
        for i, ch in itertools.product(range(len(body)), ALPHABET):
            if ch != body[i]:
                typos += 1
                decodable += bool(hashids.decode(body[:i] + ch + body[i + 1 :]))
    assert decodable > typos * 0.05


@given(issued_codes(), st.sampled_from(["{}", "{}  ", " {} ", "{}\n"]), st.booleans())
def test_input_is_normalised(case, template: str, lower: bool) -> None:
    codec, code = case
    typed = template.format(code.display.lower() if lower else code.display)
    assert codec.parse(typed) == code
    assert codec.parse(" ".join(code.compact)) == code


@pytest.mark.parametrize(
    "text", ["", "-", "ABC", "K7Q-4MXX", "ÄÖÜ-ÄÖÜ", "AAAAAA", "00000O", "\x00" * 6]
)
def test_garbage_is_not_a_valid_shelf_code(text: str) -> None:
    with pytest.raises(InvalidShelfCode, match="not a valid shelf code"):
        CODECS[6].parse(text)


def test_valid_check_but_not_a_hashid_is_rejected() -> None:
    """A string with a correct check character that hashids cannot have produced."""
    codec = CODECS[6]
    for body in itertools.product(ALPHABET[:6], repeat=5):
        candidate = "".join(body)
        for check in ALPHABET:
            if has_valid_check(candidate + check) and not codec._hashids.decode(candidate):
                with pytest.raises(InvalidShelfCode):
                    codec.parse(candidate + check)
                return
    pytest.fail("expected to find such a string")


def test_display_groups_and_section() -> None:
    code = ShelfCode("K7Q4MX")
    assert code.display == "K7Q-4MX"
    assert code.section == "K"
    assert ShelfCode("K7Q4MXR").display == "K7Q-4MXR"
    assert normalise("k7q–4mx") == "K7Q4MX"


def test_codes_are_drawn_from_secrets_and_cover_the_space() -> None:
    codec = CODECS[6]
    drawn = {codec.draw() for _ in range(3000)}
    assert len(drawn) > 2800  # random, not sequential or repeating
    sections = {code.section for code in drawn}
    assert len(sections) >= 14


def test_draw_with_a_fixed_number_is_deterministic_and_salted() -> None:
    number = next(n for n in range(100) if CODECS[6].encode(n) is not None)
    assert CODECS[6].draw(lambda _: number) == CODECS[6].encode(number)
    other = ShelfCodec("another salt", 6)
    assert {other.encode(n) for n in range(50)} != {CODECS[6].encode(n) for n in range(50)}


def test_blocklisted_strings_are_never_issued() -> None:
    codec = CODECS[6]
    issued = [codec.encode(n) for n in range(codec.space)]
    assert all(not any(w in c.compact for w in BLOCKLIST) for c in issued if c is not None)
    assert sum(c is not None for c in issued) > codec.space * 0.85
    assert 30_000 < codec.space < 50_000


def test_fixed_length_for_every_number_in_the_space() -> None:
    for length in (6, 7):
        codec = CODECS[length]
        assert len(codec._hashids.encode(0)) == length - 1
        assert len(codec._hashids.encode(codec.space - 1)) == length - 1
        assert len(codec._hashids.encode(codec.space)) == length


def test_length_bounds() -> None:
    with pytest.raises(ValueError, match="code length"):
        ShelfCodec(SALT, 5)
    with pytest.raises(ValueError, match="code length"):
        ShelfCodec(SALT, MAX_LENGTH + 1)
