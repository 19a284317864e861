"""What a hold slip may say.

A :class:`Slip` has only allow-listed fields: branch name, code, pickup-by date, desk or shelf,
and, only where the library switches them on, the last characters of the item barcode and a
truncated title. There is no field for a name, initials, card number or contact, so no layout,
template or setting can print one. Truncated names ("SMIT 1234") are deliberately not offered:
studies of self-service hold shelves found most such patrons identifiable.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from holdshelf.domain.codes import ShelfCode
from holdshelf.domain.holds import PickupMode, ShelfEntry

ITEM_TAIL_LENGTH = 4
ELLIPSIS = "…"


@dataclass(frozen=True)
class SlipOptions:
    """The library's choices; everything beyond the essentials is off by default."""

    show_item_tail: bool = False
    show_title: bool = False
    title_length: int = 24


@dataclass(frozen=True)
class Slip:
    branch_name: str
    code: ShelfCode
    pickup_by: dt.date
    desk: bool
    item_tail: str | None = None
    title: str | None = None
    test: bool = False  # a printer test, not a hold
    language: str = "en"  # the branch's, for the slip's wording
    # Printed again after an attempt that may have printed (the printer could not tell): says
    # so, so a second slip for one item is recognised and thrown away. Not stored: a property
    # of the attempt, not of the slip.
    possible_duplicate: bool = False

    @classmethod
    def for_hold(
        cls,
        entry: ShelfEntry,
        options: SlipOptions,
        *,
        item_barcode: str | None = None,
        title: str | None = None,
        language: str = "en",
    ) -> Slip:
        return cls(
            branch_name=entry.branch_name,
            code=entry.code,
            pickup_by=entry.pickup_by,
            desk=entry.mode is PickupMode.DESK,
            item_tail=item_tail(item_barcode) if options.show_item_tail else None,
            title=truncate(title, options.title_length) if options.show_title else None,
            language=language,
        )

    def payload(self) -> dict[str, Any]:
        """The slip as a print job stores it (JSON): its own fields and nothing else."""
        return {
            "branch_name": self.branch_name,
            "code": self.code.compact,
            "pickup_by": self.pickup_by.isoformat(),
            "desk": self.desk,
            "item_tail": self.item_tail,
            "title": self.title,
            "test": self.test,
            "language": self.language,
        }

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Slip:
        return cls(
            branch_name=str(data["branch_name"]),
            code=ShelfCode(str(data["code"])),
            pickup_by=dt.date.fromisoformat(data["pickup_by"]),
            desk=bool(data["desk"]),
            item_tail=data.get("item_tail"),
            title=data.get("title"),
            test=bool(data.get("test", False)),
            language=str(data.get("language", "en")),
        )


def item_tail(barcode: str | None) -> str | None:
    """Enough of the barcode to match slip and item at the desk; too little to look it up."""
    if not barcode:
        return None
    return barcode[-ITEM_TAIL_LENGTH:]


def truncate(text: str | None, length: int) -> str | None:
    if not text or not text.strip():
        return None
    text = " ".join(text.split())
    return text if len(text) <= length else text[: length - 1].rstrip() + ELLIPSIS
