"""The Numbers page's charts: inline SVG drawn on the server, no script and no request to anyone.

Each chart is an image with a name that states its figures (role="img", <title>); the tables
under the charts stay the accessible data. Bars are drawn in a fixed viewBox stretched to the
width of the page (preserveAspectRatio="none"), so the SVG holds no text to squash: the words are in
HTML around it, and every colour and size is a class in static/style.css (the CSP allows no
style attributes).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from markupsafe import Markup

from holdshelf.service import CROWDED_SHARE, BranchUsage, DayCounts

EVENTS = {
    "ready": "Ready",
    "picked_up": "Picked up",
    "expired": "Expired",
    "cancelled": "Cancelled",
}
BAR_SLOT = 10  # viewBox units per day; a bar fills 8 of them
CHART_HEIGHT = 100  # viewBox units: the tallest bar of a branch's charts


@dataclass(frozen=True)
class Series:
    """One event's counts at one branch, a number per day, oldest first."""

    event: str
    counts: list[int]

    @property
    def label(self) -> str:
        return EVENTS[self.event]

    @property
    def total(self) -> int:
        return sum(self.counts)

    @property
    def peak(self) -> int:
        return max(self.counts, default=0)


@dataclass(frozen=True)
class BranchChart:
    """A branch's four daily series over the same days, on one scale."""

    branch: str
    name: str
    first: dt.date
    series: list[Series]

    @property
    def scale(self) -> int:
        return max((s.peak for s in self.series), default=0)

    @property
    def empty(self) -> bool:
        return self.scale == 0

    def days(self) -> list[dt.date]:
        return [self.first + dt.timedelta(days=n) for n in range(len(self.series[0].counts))]


def branch_charts(
    days: Iterable[DayCounts], names: Mapping[str, str], first: dt.date, last: dt.date
) -> list[BranchChart]:
    """The daily charts of each branch in ``names`` from ``first`` to ``last`` (a day without
    a row had nothing happen)."""
    length = (last - first).days + 1
    counts = {(branch, event): [0] * length for branch in names for event in EVENTS}
    for day in days:
        index = (day.day - first).days
        if day.branch not in names or not 0 <= index < length:
            continue
        for event in EVENTS:
            counts[day.branch, event][index] = sum(day.counts.get(event, {}).values())
    return [
        BranchChart(branch, name, first, [Series(e, counts[branch, e]) for e in EVENTS])
        for branch, name in names.items()
    ]


def _date(day: dt.date) -> str:
    return f"{day.day} {day:%b}"


def caption(series: Series) -> str:
    """The figures of one chart in words, shown under its branch's heading."""
    if series.total == 0:
        return f"{series.label}: none"
    return f"{series.label}: {series.total}, at most {series.peak} a day"


BAR = Markup('<rect x="{x}" y="{y}" width="{width}" height="{height}"><title>{tip}</title></rect>')
DAILY = Markup(
    '<svg class="bars" role="img" viewBox="0 0 {width} {height}" preserveAspectRatio="none">'
    "<title>{name}</title>{bars}</svg>"
)
METER = Markup(
    '<svg class="meter" role="img" viewBox="0 0 100 10" preserveAspectRatio="none">'
    "<title>{name}</title>"
    '<rect class="track" x="0" y="0" width="100" height="10"/>'
    '<rect class="{fill}" x="0" y="0" width="{width}" height="10"/>'
    '<rect class="limit" x="{limit}" y="0" width="0.4" height="10"/></svg>'
)


def daily_svg(chart: BranchChart, series: Series) -> Markup:
    """A bar per day, heights proportional to the counts on the branch's common scale."""
    days = chart.days()
    name = (
        f"{series.label} per day at {chart.name} ({chart.branch}), {_date(days[0])} to "
        f"{_date(days[-1])}: {series.total} in all"
        + (f", at most {series.peak} a day" if series.total else "")
    )
    scale = chart.scale or 1
    bars = []
    for n, (day, count) in enumerate(zip(days, series.counts, strict=True)):
        height = round(count * CHART_HEIGHT / scale, 2)
        bars.append(
            BAR.format(
                x=n * BAR_SLOT + 1,
                y=f"{CHART_HEIGHT - height:g}",
                width=BAR_SLOT - 2,
                height=f"{height:g}",
                tip=f"{_date(day)}: {count} {series.label.lower()}",
            )
        )
    return DAILY.format(
        width=len(days) * BAR_SLOT, height=CHART_HEIGHT, name=name, bars=Markup("").join(bars)
    )


def share_text(usage: BranchUsage) -> str:
    """``12 of about 34,000 codes in use (under 1%)``."""
    share = usage.share
    # Rounded down: a nearly full branch never reads "100%" while codes are left.
    percent = "under 1%" if 0 < share < 0.01 else f"{math.floor(share * 100)}%"
    return f"{usage.codes_in_use:,} of about {usage.code_capacity:,} codes in use ({percent})"


crowded_percent = f"{CROWDED_SHARE:.0%}"


def crowded_text(usage: BranchUsage) -> str:
    return (
        f"{usage.branch} has used more than {crowded_percent} of its shelf codes: raise its "
        "code_length by one before they run out."
    )


def usage_svg(usage: BranchUsage, name: str) -> Markup:
    """A bar across the page: how much of the branch's code space is taken."""
    return METER.format(
        name=f"Shelf codes at {name} ({usage.branch}): {share_text(usage)}",
        fill="fill crowded" if usage.crowded else "fill",
        width=f"{round(min(usage.share, 1.0) * 100, 2):g}",
        limit=f"{CROWDED_SHARE * 100:g}",
    )
