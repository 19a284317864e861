"""The Numbers page's SVG charts, read back as XML: bars follow the counts, the figures are in
the image's name, and nothing points anywhere."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest
from markupsafe import Markup

from holdshelf.service import BranchUsage, DayCounts
from holdshelf.web.charts import (
    CHART_HEIGHT,
    branch_charts,
    caption,
    crowded_text,
    daily_svg,
    share_text,
    usage_svg,
)

FIRST = dt.date(2026, 11, 19)
LAST = dt.date(2026, 11, 23)
NAMES = {"MAIN": "Central <Library> & Co", "EAST": "Eastside Branch"}


def parse(svg: Markup) -> ET.Element:
    root = ET.fromstring(str(svg))
    assert root.tag == "svg" and root.get("role") == "img"
    assert root[0].tag == "title", "the name comes first"
    return root


def assert_points_nowhere(svg: Markup) -> None:
    text = str(svg).lower()
    for external in ("http", "//", "href", "url(", "style"):
        assert external not in text


def days() -> list[DayCounts]:
    return [
        DayCounts(LAST, "MAIN", {"ready": {"shelf": 4, "desk": 2}, "picked_up": {"shelf": 3}}),
        DayCounts(FIRST, "MAIN", {"ready": {"shelf": 3}, "cancelled": {"desk": 1}}),
        DayCounts(FIRST + dt.timedelta(days=2), "MAIN", {"expired": {"shelf": 2}}),
        DayCounts(FIRST - dt.timedelta(days=1), "MAIN", {"ready": {"shelf": 9}}),  # too early
        DayCounts(LAST, "GONE", {"ready": {"shelf": 1}}),  # a branch no longer configured
    ]


def test_series_per_branch_and_event_oldest_first() -> None:
    main, east = branch_charts(days(), NAMES, FIRST, LAST)
    assert [(s.event, s.counts) for s in main.series] == [
        ("ready", [3, 0, 0, 0, 6]),
        ("picked_up", [0, 0, 0, 0, 3]),
        ("expired", [0, 0, 2, 0, 0]),
        ("cancelled", [1, 0, 0, 0, 0]),
    ]
    assert main.scale == 6 and main.days() == [FIRST + dt.timedelta(days=n) for n in range(5)]
    assert east.empty and [s.total for s in east.series] == [0, 0, 0, 0]
    assert caption(main.series[0]) == "Ready: 9, at most 6 a day"
    assert caption(east.series[0]) == "Ready: none"


def test_bar_heights_follow_the_counts_on_one_scale() -> None:
    (main, _) = branch_charts(days(), NAMES, FIRST, LAST)
    for series in main.series:
        svg = daily_svg(main, series)
        assert_points_nowhere(svg)
        root = parse(svg)
        bars = root.findall("rect")
        assert len(bars) == 5  # a bar a day, zero-high on a quiet day
        heights = [float(bar.get("height")) for bar in bars]
        assert heights == pytest.approx([c * CHART_HEIGHT / 6 for c in series.counts], abs=0.01)
        for bar, height in zip(bars, heights, strict=True):
            assert float(bar.get("y")) + height == pytest.approx(CHART_HEIGHT)  # from the axis
        assert [float(b.get("x")) for b in bars] == sorted(float(b.get("x")) for b in bars)
        assert [bar.findtext("title") for bar in bars][-1] == (
            f"23 Nov: {series.counts[-1]} {series.label.lower()}"
        )
    name = parse(daily_svg(main, main.series[0])).findtext("title")
    assert name == (
        "Ready per day at Central <Library> & Co (MAIN), 19 Nov to 23 Nov: 9 in all, "
        "at most 6 a day"
    )
    assert "&lt;Library&gt; &amp; Co" in str(daily_svg(main, main.series[0]))  # escaped


def test_a_quiet_branch_draws_flat_bars() -> None:
    (_, east) = branch_charts(days(), NAMES, FIRST, LAST)
    root = parse(daily_svg(east, east.series[0]))
    assert {bar.get("height") for bar in root.findall("rect")} == {"0"}
    assert root.findtext("title").endswith(": 0 in all")


@pytest.mark.parametrize(
    ("in_use", "capacity", "words", "width", "crowded"),
    [
        (12, 35075, "12 of about 35,075 codes in use (under 1%)", 0.03, False),
        (0, 35075, "0 of about 35,075 codes in use (0%)", 0, False),
        (24552, 35075, "24,552 of about 35,075 codes in use (69%)", 70, False),
        (24600, 35075, "24,600 of about 35,075 codes in use (70%)", 70.14, True),
        (34999, 35075, "34,999 of about 35,075 codes in use (99%)", 99.78, True),
    ],
)
def test_code_space_bar(in_use: int, capacity: int, words: str, width: float, crowded: bool):
    usage = BranchUsage("MAIN", 3, in_use, capacity)
    assert usage.crowded is crowded
    assert share_text(usage) == words
    svg = usage_svg(usage, "Central Library")
    assert_points_nowhere(svg)
    root = parse(svg)
    assert root.findtext("title") == f"Shelf codes at Central Library (MAIN): {words}"
    track, fill, limit = root.findall("rect")
    assert (track.get("class"), float(track.get("width"))) == ("track", 100)
    assert float(fill.get("width")) == pytest.approx(width, abs=0.01)
    assert fill.get("class") == ("fill crowded" if crowded else "fill")
    assert (limit.get("class"), float(limit.get("x"))) == ("limit", 70)


def test_crowded_branch_is_told_what_to_do() -> None:
    usage = BranchUsage("EAST", 30000, 30000, 35075)
    assert crowded_text(usage) == (
        "EAST has used more than 70% of its shelf codes: raise its code_length by one before "
        "they run out."
    )
