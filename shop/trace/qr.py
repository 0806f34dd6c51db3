"""QR codes for labels: SVG (printed sheets, inline in pages) and PNG (messaging apps, printers)."""

from __future__ import annotations

import io

import segno


def qr_svg(data: str, *, scale: int = 4, inline: bool = False) -> str:
    qr = segno.make(data, error="m")
    if inline:
        return qr.svg_inline(scale=scale, dark="#1f2421", svgclass="qr", omitsize=True)
    buf = io.BytesIO()
    qr.save(buf, kind="svg", scale=scale, dark="#1f2421", xmldecl=True, svgclass="qr")
    return buf.getvalue().decode()


def qr_png(data: str, *, scale: int = 8) -> bytes:
    buf = io.BytesIO()
    segno.make(data, error="m").save(buf, kind="png", scale=scale, border=4)
    return buf.getvalue()
