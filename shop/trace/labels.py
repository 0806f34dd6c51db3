"""Label sheets: the A4 layouts of common self-adhesive stock, which lots get a label, and how
a label's text is sized so that it fits its label (wrapped or shrunk, never clipped).

A sheet is printed with ``@page { size: A4; margin: 0 }`` and every label absolutely placed in
millimetres from the sheet's top-left corner (``Layout.position``), so what the browser
prints is where the die-cut labels are. The figures are the stock's published template
geometry (docs/traceability.md, "Labels"). No Flask here.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from shop.trace.models import HarvestLot, LotLink
from shop.trace.quantity import PIECE_UNITS

A4_MM = (210.0, 297.0)


@dataclass(frozen=True)
class Layout:
    """One A4 sheet of die-cut labels: size, grid, and the offsets of the first label."""

    key: str
    across: int
    down: int
    width_mm: float
    height_mm: float
    top_mm: float  # page top to the first row's top edge
    side_mm: float  # page left to the first column's left edge
    pitch_x_mm: float  # left edge to the next label's left edge
    pitch_y_mm: float  # top edge to the next row's top edge
    qr_mm: float  # the QR code's side on this label
    equivalents: str  # other stock cut the same way

    @property
    def per_sheet(self) -> int:
        return self.across * self.down

    def position(self, index: int) -> tuple[float, float]:
        """(left, top) in mm of the label at ``index`` (0-based, row by row) on its sheet."""
        row, col = divmod(index % self.per_sheet, self.across)
        return (
            round(self.side_mm + col * self.pitch_x_mm, 2),
            round(self.top_mm + row * self.pitch_y_mm, 2),
        )

    @property
    def text_width_mm(self) -> float:
        return self.width_mm - 2 * PADDING_MM - self.qr_mm - GAP_MM


PADDING_MM = 2.0  # inside each label, all round (printers do not print to a die-cut edge)
GAP_MM = 2.0  # between the QR code and the text

# Both are centred on the A4 sheet: (210 - 2 × pitch − width) / 2 at the sides and
# (297 − 7 × 38.1) / 2 = 15.15 mm at the top and bottom.
LAYOUTS: dict[str, Layout] = {
    layout.key: layout
    for layout in (
        Layout("L7160", 3, 7, 63.5, 38.1, 15.15, 7.21, 66.04, 38.1, 24.0, "J8160, L7160, L7560, L7660"),
        Layout("L7163", 2, 7, 99.1, 38.1, 15.15, 4.65, 101.6, 38.1, 30.0, "J8163, L7163, L7563, L7663"),
    )
}
DEFAULT_LAYOUT = "L7160"
MAX_LABELS = 210  # ten sheets of 21 at a time


def layout(key: str | None) -> Layout:
    """The layout named ``key``, or the default one for anything else."""
    return LAYOUTS.get((key or "").upper(), LAYOUTS[DEFAULT_LAYOUT])


def labelled_lots(session: Session, chosen: Iterable[HarvestLot]) -> list[HarvestLot]:
    """The lots that get a label: one per pack, never one per lot that was packed.

    A lot split into packs gets its packs' labels (16 packs: 16 labels, each with its own lot
    number and QR code), a lot with no packs (or a pack, or a gift box) its own: one, or one
    per piece still in stock when it is counted in pieces (``pieces``). In the order chosen,
    packs in the order they were made.
    """
    out: list[HarvestLot] = []
    seen: set[int] = set()
    for lot in chosen:
        packs = list(
            session.scalars(
                select(HarvestLot)
                .join(LotLink, LotLink.child_id == HarvestLot.id)
                .where(LotLink.parent_id == lot.id, HarvestLot.kind == "pack")
                .order_by(HarvestLot.id)
            )
        )
        for each in packs or [lot]:
            if each.id not in seen:
                seen.add(each.id)
                out.extend([each] * pieces(each))
    return out[:MAX_LABELS]


def pieces(lot: HarvestLot) -> int:
    """How many labels a lot takes: one per piece for a lot counted in pieces (60 bags of
    millet: 60 labels, each with the lot's number; review), else one (a lot weighed in kg
    or jin is one pack)."""
    if lot.unit in PIECE_UNITS:
        return max(1, min(int(lot.remaining), MAX_LABELS))
    return 1


def sheets(items: Sequence, layout: Layout) -> list[list[tuple[float, float, object]]]:
    """``items`` cut into sheets: per sheet, (left mm, top mm, item) for each label."""
    per = layout.per_sheet
    return [
        [(*layout.position(i), item) for i, item in enumerate(items[start : start + per])]
        for start in range(0, len(items), per)
    ]


def public_url_problem(base_url: str | None) -> str | None:
    """Why printed QR codes would point nowhere: ``"unset"``, ``"loopback"`` (localhost,
    127.x, ::1) or ``"unspecified"`` (0.0.0.0); None when the base URL is a real address."""
    if not (base_url or "").strip():
        return "unset"
    host = (urlsplit(base_url or "").hostname or "").strip("[]").lower()
    if not host:
        return "unset"
    if host == "localhost" or host.endswith(".localhost"):
        return "loopback"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.is_loopback:
        return "loopback"
    if address.is_unspecified:
        return "unspecified"
    return None


# --- fitting the text -------------------------------------------------------------------

PT_MM = 25.4 / 72
LINE_HEIGHT = 1.22
SCALES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.42)


def _em_width(text: str) -> float:
    """The width of ``text`` in em: CJK and full-width characters 1 em, others about 0.56 em."""
    return sum(1.0 if unicodedata.east_asian_width(ch) in "WF" else 0.56 for ch in text)


def _lines(text: str, size_pt: float, width_mm: float) -> int:
    """How many lines ``text`` takes wrapped at ``width_mm`` (breaking anywhere, as the CSS does)."""
    per_line = width_mm / (size_pt * PT_MM)
    return max(1, -int(-_em_width(text) // max(per_line, 0.5)))


def fit_scale(lines: Sequence[tuple[str, float]], width_mm: float, height_mm: float) -> float:
    """The largest scale (of ``SCALES``) at which these (text, font size in pt) lines, each
    wrapped to ``width_mm``, fit ``height_mm``; the smallest scale when none does."""
    for scale in SCALES:
        total = sum(
            _lines(text, size * scale, width_mm) * size * scale * PT_MM * LINE_HEIGHT
            for text, size in lines
            if text
        )
        if total <= height_mm:
            return scale
    return SCALES[-1]
