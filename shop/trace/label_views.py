"""The label sheet page, ``/trace/labels``: one label per pack on standard A4 stock.

``/trace/labels?lot=<id>&lot=<id>[&layout=L7160|L7163][&confirm_recalled=1]`` (farmers for
their household's lots, staff for all). Its route joins the trace blueprint of
``shop.trace.blueprint`` (``app.create_app`` imports this module), endpoint ``trace.labels``.

Refusals and warnings, on the page itself:
* a recalled lot (or a pack of one) is left off the sheet unless the user confirms, and then
  its labels say so (已召回 · 不得销售, "Recalled · not for sale");
* a ``PUBLIC_BASE_URL`` that is unset or a loopback address (localhost, 127.x, ::1) is
  warned about: the printed QR codes would point nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import abort, render_template, request
from flask_login import current_user
from markupsafe import Markup

from core.web import db_session, role_required, settings
from shop.trace import access as trace_access
from shop.trace import gs1, labels, qr
from shop.trace.blueprint import bp
from shop.trace.models import HarvestLot
from shop.trace.story import ProducerInfo, producer_info

FARM_ROLES = ("admin", "official", "farmer")
# (font size in pt) of each line of a label's text, before fitting (labels.fit_scale)
SIZES = {"name": 10.0, "name_en": 7.0, "lot": 7.5, "date": 7.0, "producer": 6.5, "code": 7.0, "url": 5.5}


@dataclass(frozen=True)
class LabelItem:
    lot: HarvestLot
    qr: Markup
    short_url: str
    name_zh: str
    name_en: str
    scale: float
    recalled: bool


def _item(lot: HarvestLot, layout: labels.Layout, producer: ProducerInfo | None) -> LabelItem:
    cfg = settings()
    target = gs1.label_url(cfg.public_base_url, lot)
    short = gs1.short_url(cfg.public_base_url, lot.code)
    name_zh = lot.product.name_zh if lot.product else ""
    name_en = lot.product.name_en if lot.product else ""
    # what the template prints (in the user's language; the Chinese wording is as long or longer)
    lines = [
        (name_zh, SIZES["name"]),
        (name_en, SIZES["name_en"]),
        (f"批次 {lot.lot_number}", SIZES["lot"]),
        (f"采收 {lot.harvested_on}" if lot.harvested_on else "", SIZES["date"]),
        (f"{producer.name} {producer.phone}" if producer else "", SIZES["producer"]),
        (f"扫码溯源 · {lot.code}", SIZES["code"]),
        (short, SIZES["url"]),
        ("已召回 · 不得销售" if lot.recalled_at else "", SIZES["lot"]),
    ]
    scale = labels.fit_scale(lines, layout.text_width_mm, layout.height_mm - 2 * labels.PADDING_MM)
    return LabelItem(
        lot=lot,
        qr=Markup(qr.qr_svg(target, scale=3, inline=True)),
        short_url=short,
        name_zh=name_zh,
        name_en=name_en,
        scale=scale,
        recalled=lot.recalled_at is not None,
    )


@bp.get("/trace/labels", endpoint="labels")
@role_required(*FARM_ROLES)
def labels_page():
    """A printable A4 sheet of labels on standard stock, one label per pack of the chosen lots."""
    session = db_session()
    ids = request.args.getlist("lot", type=int)
    chosen = [
        lot for lot in (session.get(HarvestLot, i) for i in ids[: labels.MAX_LABELS]) if lot is not None
    ]
    chosen = [lot for lot in chosen if trace_access.can_manage_lot(current_user, lot)]
    if not chosen:
        abort(404)
    layout = labels.layout(request.args.get("layout"))
    confirmed = request.args.get("confirm_recalled") == "1"
    every = labels.labelled_lots(session, chosen)
    recalled = [lot for lot in every if lot.recalled_at is not None]
    printed = every if confirmed else [lot for lot in every if lot.recalled_at is None]
    producer = producer_info(session)
    items = [_item(lot, layout, producer) for lot in printed]
    cfg = settings()
    return render_template(
        "trace/labels.html",
        layout=layout,
        layouts=labels.LAYOUTS,
        sheets=labels.sheets(items, layout),
        items=items,
        chosen=chosen,
        recalled=recalled,
        confirmed=confirmed,
        packed=[lot for lot in chosen if lot not in every],
        url_problem=labels.public_url_problem(cfg.public_base_url),
        public_base_url=cfg.public_base_url,
        producer=producer,
        padding=labels.PADDING_MM,
        gap=labels.GAP_MM,
    )
