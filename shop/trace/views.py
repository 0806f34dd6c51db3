"""Traceability pages: the public trace page and QR codes, farmer pages for crop cycles and
harvest lots, labels, inspections, splits and merges, recalls, and the EPCIS API.

URL map
  /t/<code>                           public trace page (no login, cached)
  /01/<gtin>[/10/<lot>]               GS1 Digital Link (shop.trace.gs1_views)
  /t/<code>/qr.svg, /t/<code>/qr.png  the label's QR code
  /t/<code>/certificate/<id>          an inspection certificate
  /trace/...                          farmers and staff: cycles, lots, labels, merge, recalls
  /api/v1/lots/<lot>/epcis            EPCIS 2.0 document (login or Bearer token)
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import OrderedDict
from datetime import date
from decimal import Decimal
from typing import Any

from flask import (
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from flask.blueprints import BlueprintSetupState
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import Select, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.elements import ColumnElement

from core import clock
from core.web import attempt, db_session, role_required, settings
from iot.access import visible_greenhouses
from shop.trace import access as trace_access
from shop.trace import (
    cycles,
    epcis,
    gs1,
    inspections,
    lookups,
    lots,
    qr,
    quantity,
    recall,
    resolver,
)
from shop.trace.ancestry import ancestry, descendants
from shop.trace.blueprint import CACHE_KEY, bp
from shop.trace.forms import (
    RESULT_ROWS,
    CropCycleForm,
    HarvestForm,
    InspectionForm,
    MergeForm,
    RecallForm,
    SplitForm,
)
from shop.trace.models import RESULT_UNITS, CropCycle, HarvestLot
from shop.trace.ports import EXTENSION, Sellable, ShopPort, port_of
from shop.trace.story import Origin, Story, build_story, crop_names

FARM_ROLES = ("admin", "official", "farmer")
STAFF_ROLES = ("admin", "official")
PAGE_MAX_AGE = 60  # seconds a trace page may be served from the cache (here and in browsers)


# --- the trace page cache ---------------------------------------------------------------


class StoryCache:
    """A small thread-safe TTL + LRU cache of built stories, one per app (and process).

    Stories are plain data; pages are rendered per request (the header shows who is
    logged in). Any change through these views clears it; other processes see changes
    within ``ttl`` seconds.
    """

    def __init__(self, ttl: float = PAGE_MAX_AGE, size: int = 2048):
        self.ttl, self.size = ttl, size
        self._items: OrderedDict[str, tuple[float, Story]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: str) -> Story | None:
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] < time.monotonic():
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[1]

    def put(self, key: str, story: Story) -> None:
        with self._lock:
            self._items[key] = (time.monotonic() + self.ttl, story)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


@bp.record_once
def _setup(state: BlueprintSetupState) -> None:
    """Registered with ``app.register_blueprint(bp, shop=ShopPort(...))`` (the composition root)."""
    shop = state.options.get("shop")
    if not isinstance(shop, ShopPort):
        raise RuntimeError("register the trace blueprint with shop=ShopPort(...) (see shop.trace.ports)")
    state.app.extensions[EXTENSION] = shop
    state.app.jinja_env.filters["crop_name"] = _crop_name  # "peach" → 桃 on Chinese pages
    state.app.extensions.setdefault(CACHE_KEY, StoryCache())
    state.app.jinja_env.globals["trace_chart"] = _chart


def story_cache() -> StoryCache:
    return current_app.extensions[CACHE_KEY]


def _shop() -> ShopPort:
    return port_of(current_app)


# --- helpers ----------------------------------------------------------------------------


def _lang() -> str:
    locale = get_locale()
    return "zh_CN" if locale and locale.language == "zh" else "en"


def _crop_name(crop: str | None) -> str:
    """A crop cycle's crop in the page's language (``story.crop_names``), as the trace page says it."""
    zh, en = crop_names(crop)
    return zh if _lang() == "zh_CN" else en


def _today() -> date:
    return clock.today()


def _base_url() -> str:
    return settings().public_base_url


def _uid() -> int | None:
    return current_user.id if current_user.is_authenticated else None


def _lot_or_404(lot_id: int) -> HarvestLot:
    lot = db_session().get(HarvestLot, lot_id)
    if lot is None or not trace_access.can_manage_lot(current_user, lot):
        abort(404)
    return lot


def _cycle_or_404(cycle_id: int) -> CropCycle:
    cycle = db_session().get(CropCycle, cycle_id)
    if cycle is None or not trace_access.can_manage_cycle(current_user, cycle):
        abort(404)
    return cycle


def _mine(stmt: Select[Any], condition: ColumnElement[bool] | None) -> Select[Any]:
    return stmt if condition is None else stmt.where(condition)


def _greenhouses():
    return visible_greenhouses(db_session(), current_user)


def _products() -> dict[int, Sellable]:
    """The products a farmer may choose (the shop's active ones), by id, in the shop's order."""
    return {p.id: p for p in _shop().products(db_session())}


def _product_choices(products: list[Sellable], blank: bool = True) -> list[tuple[int, str]]:
    """Select choices of these products; "—" (0) first if ``blank``."""
    lang = _lang()
    choices = [(p.id, p.name(lang)) for p in products]
    return ([(0, "—")] if blank else []) + choices


def _harvest_products(products: dict[int, Sellable], cycle: CropCycle | None) -> list[Sellable]:
    """What a new lot of ``cycle`` may be sold as, for the current user (``lots.may_sell_as``)."""
    return [p for p in products.values() if lots.may_sell_as(p, None, current_user, cycle=cycle)]


def _pack_products(products: dict[int, Sellable], lot: HarvestLot) -> list[Sellable]:
    """What ``lot``'s packs may be sold as: its own product first, then others it may be."""
    allowed = [p for p in products.values() if lots.may_sell_as(p, lot, current_user)]
    return sorted(allowed, key=lambda p: p.id != lot.product_id)


def _stories_changed() -> None:
    """A lot's story changed (and is committed): forget the cached stories."""
    story_cache().clear()


# --- public: the trace page, QR codes, certificates -------------------------------------


def _story_for(lot: HarvestLot) -> Story:
    cache = story_cache()
    story = cache.get(lot.code)
    if story is None:
        story = build_story(
            db_session(), lot, _base_url(), settings().gs1_company_prefix, sales_of=_shop().sales_of
        )
        cache.put(lot.code, story)
    return story


def _count_lookup(lot: HarvestLot) -> lookups.Lookups | None:
    """Count this view of the page (the counterfeit signal), outside the cached story.

    Not counted: HEAD requests, robots that say so, and logged-in staff and farmers (they
    preview their own lots); they see the count so far. A database too busy to count shows
    the page without the count rather than failing.
    """
    session = db_session()
    previewing = current_user.is_authenticated and current_user.role in FARM_ROLES
    try:
        if request.method == "HEAD" or previewing or lookups.is_robot(request.headers.get("User-Agent")):
            return lookups.current(session, lot.id)
        with attempt(flash_error=False):  # its own transaction, committed before the page renders
            counted = lookups.record(session, lot.id)
        return counted
    except OperationalError:  # attempt rolled back
        current_app.logger.warning("trace lookup of %s not counted", lot.lot_number, exc_info=True)
        return None


def _public_page(lot: HarvestLot | None, *, holds_code: bool = True) -> Response:
    """The trace page. ``holds_code``: reached by the lot's trace code (``/t/<code>``); a
    Digital Link (guessable: GTIN and lot number) gets the story without the code and
    without what only the code unlocks (certificates, the short URL, the code's QR)."""
    if lot is None:
        response = Response(render_template("trace/not_found.html"), status=404)
        response.headers["Cache-Control"] = "no-store"
        return response
    story = _story_for(lot)
    if not holds_code:
        story = dataclasses.replace(story, code="", short_url="")
    lookup = _count_lookup(lot)
    response = Response(
        render_template("trace/public.html", story=story, lang=_lang(), lookup=lookup, holds_code=holds_code)
    )
    # The page carries base.html's per-visitor CSRF token, so shared caches must not
    # keep it; the phone may, briefly. The server-side story cache does the heavy lifting.
    response.headers["Cache-Control"] = f"private, max-age={PAGE_MAX_AGE}"
    response.headers["Vary"] = "Cookie, Accept-Language"
    return response


def _lookup_code(code: str) -> HarvestLot | None:
    """The lot of a trace code; a miss is counted per client address (429 once too many)."""
    return resolver.lot_by_code(code)


@bp.get("/t/")
def enter_code():
    """A box to type the code printed under the QR code."""
    code = request.args.get("code", "")
    if code:
        return redirect(url_for("trace.public_by_code", code=lots.normalize_code(code)))
    return render_template("trace/enter_code.html")


@bp.get("/t/<code>")
def public_by_code(code: str):
    """The public trace page of a lot or pack, by its short code."""
    return _public_page(_lookup_code(code))


# The GS1 Digital Link routes (/01/<gtin>, /01/<gtin>/10/<lot>) are in shop.trace.gs1_views.


def _qr_target(lot: HarvestLot) -> str:
    return gs1.label_url(_base_url(), lot)


@bp.get("/t/<code>/qr.svg")
def qr_svg(code: str):
    """The lot's QR code as SVG (what the label prints)."""
    lot = _lookup_code(code) or abort(404)
    response = Response(qr.qr_svg(_qr_target(lot)), mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


@bp.get("/t/<code>/qr.png")
def qr_png(code: str):
    """The lot's QR code as PNG (for messaging apps and label printers)."""
    lot = _lookup_code(code) or abort(404)
    scale = min(max(request.args.get("scale", 8, type=int), 2), 20)
    response = Response(qr.qr_png(_qr_target(lot), scale=scale), mimetype="image/png")
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


@bp.get("/t/<code>/certificate/<int:inspection_id>")
def certificate(code: str, inspection_id: int):
    """An inspection certificate of the lot (or of a lot it was made from)."""
    lot = _lookup_code(code) or abort(404)
    found = next((i for i in inspections.inspections_for(db_session(), lot) if i.id == inspection_id), None)
    if found is None or not found.certificate_file:
        abort(404)
    return send_from_directory(
        _certificate_dir(),
        found.certificate_file,
        download_name=found.certificate_name or found.certificate_file,
        max_age=86400,
    )


def _certificate_dir():
    return settings().instance_path / "certificates"


def _chart(origin: Origin, which: str) -> Markup:
    """A small server-side SVG chart of daily values over the cycle (Jinja global)."""
    from iot.charts import Chart, ChartSeries, render
    from iot.series import Series

    cond = origin.conditions

    def series(name: str) -> Series:
        return Series(0, "day", cond.start, cond.end, list(cond.daily.get(name, [])))

    if which == "climate":
        lines = [
            ChartSeries(series("air_temperature"), _("Air temperature"), "°C"),
            ChartSeries(series("air_humidity"), _("Air humidity"), "%"),
        ]
        title = _("Daily air temperature (°C, left) and humidity (%, right)")
    else:
        lines = [ChartSeries(series("soil_moisture"), _("Soil moisture"), "%", color="#8a5a2b")]
        title = _("Daily soil moisture (%)")
    return Markup(render(Chart(cond.start, cond.end, lines, title=title, no_data=_("No data"))))


# --- farmers and staff: crop cycles -----------------------------------------------------


@bp.get("/trace/")
@role_required(*FARM_ROLES)
def index():
    """Crop cycles and recent lots of the farmer's household (all of them for staff)."""
    session = db_session()
    cycles_stmt = select(CropCycle).order_by(CropCycle.ended_on.is_not(None), CropCycle.planted_on.desc())
    lots_stmt = select(HarvestLot).order_by(HarvestLot.created_at.desc(), HarvestLot.id.desc()).limit(30)
    cycles_stmt = _mine(cycles_stmt, trace_access.cycle_condition(current_user))
    lots_stmt = _mine(lots_stmt, trace_access.lot_condition(current_user))
    return render_template(
        "trace/index.html",
        cycles=list(session.scalars(cycles_stmt.limit(50))),
        lots=list(session.scalars(lots_stmt)),
        staff=current_user.role in STAFF_ROLES,
    )


@bp.route("/trace/cycles/new", methods=["GET", "POST"])
@role_required(*FARM_ROLES)
def new_cycle():
    """Start a crop cycle in one of the farmer's greenhouses."""
    form = CropCycleForm()
    greenhouses = _greenhouses()
    form.greenhouse_id.choices = [(g.id, f"{g.name} ({g.code})") for g in greenhouses]
    if request.method == "GET":
        form.planted_on.data = form.planted_on.data or _today()
        if len(greenhouses) >= 1 and not form.crop.data:
            form.crop.data = greenhouses[0].crop or ""
    if form.validate_on_submit():
        gh = next((g for g in greenhouses if g.id == form.greenhouse_id.data), None)
        if gh is None:
            abort(404)
        with attempt() as result:
            cycle = cycles.create_crop_cycle(
                db_session(),
                gh.id,
                form.crop.data or "",
                form.planted_on.data or _today(),
                variety=form.variety.data,
                expected_harvest_on=form.expected_harvest_on.data,
                comfort_min_c=form.comfort_min_c.data,
                comfort_max_c=form.comfort_max_c.data,
                user_id=_uid(),
            )
        if result.ok:
            _stories_changed()
            flash(_("Crop cycle started."), "success")
            return redirect(url_for("trace.cycle", cycle_id=cycle.id))
    return render_template("trace/cycle_form.html", form=form), (400 if form.errors else 200)


@bp.post("/trace/cycles/<int:cycle_id>/end")
@role_required(*FARM_ROLES)
def end_cycle(cycle_id: int):
    """Close a crop cycle (no more harvests from it)."""
    cycle = _cycle_or_404(cycle_id)
    with attempt() as result:
        cycles.end_crop_cycle(db_session(), cycle, _today())
    if result.ok:
        _stories_changed()
        flash(_("Crop cycle ended."), "success")
    return redirect(url_for("trace.cycle", cycle_id=cycle.id))


# --- harvest lots -----------------------------------------------------------------------


@bp.route("/trace/lots/new", methods=["GET", "POST"])
@role_required(*FARM_ROLES)
def new_lot():
    """Record a harvest in a few taps: cycle, product, quantity (today is the default date)."""
    session = db_session()
    growing = cycles.active_cycles(session, trace_access.cycle_condition(current_user))
    form = HarvestForm()
    form.cycle_id.choices = [
        (c.id, f"{c.greenhouse.name} · {c.crop}" + (f" {c.variety}" if c.variety else "")) for c in growing
    ]
    selected = request.args.get("cycle", type=int) or (growing[0].id if growing else None)
    if request.method == "GET":
        form.cycle_id.data = selected
        form.harvested_on.data = _today()
    chosen = next((c for c in growing if c.id == (form.cycle_id.data or selected)), None)
    products = _products()
    form.product_id.choices = _product_choices(_harvest_products(products, chosen))
    if request.method == "GET" and chosen is not None and len(form.product_id.choices) > 1:
        form.product_id.data = form.product_id.choices[1][0]
        product = products.get(form.product_id.data)
        if product is not None and product.unit in dict(form.unit.choices):
            form.unit.data = product.unit
    if not growing:
        return render_template("trace/lot_form.html", form=form, cycles=growing)
    if form.validate_on_submit():
        if chosen is None:
            abort(404)
        with attempt() as result:
            lot = lots.create_harvest_lot(
                session,
                chosen,
                form.quantity.data,
                form.unit.data,
                harvested_on=form.harvested_on.data,
                product_id=form.product_id.data or None,
                grade=form.grade.data or None,
                user_id=_uid(),
                override_reason=form.override_reason.data if current_user.role in STAFF_ROLES else None,
            )
        if result.ok:
            _stories_changed()
            flash(_("Harvest lot %(lot)s recorded.", lot=lot.lot_number), "success")
            return redirect(url_for("trace.lot", lot_id=lot.id))
    return render_template("trace/lot_form.html", form=form, cycles=growing), (400 if form.errors else 200)


@bp.get("/trace/lots/<int:lot_id>")
@role_required(*FARM_ROLES)
def lot(lot_id: int):
    """A lot for its farmer and staff: label, QR, ancestry, packs, inspections, recall."""
    return _lot_page(_lot_or_404(lot_id))


def _lot_page(
    lot: HarvestLot,
    *,
    inspection_form: InspectionForm | None = None,
    result_rows: list[dict[str, str]] | None = None,
    result_error: inspections.ResultError | None = None,
) -> str:
    session = db_session()
    staff = current_user.role in STAFF_ROLES
    split_form = SplitForm()
    split_form.product_id.choices = _product_choices(_pack_products(_products(), lot))
    split_form.product_id.data = lot.product_id or 0
    if inspection_form is None:
        inspection_form = InspectionForm()
        inspection_form.tested_on.data = _today()
    return render_template(
        "trace/lot.html",
        lot=lot,
        parents=ancestry(session, lot),
        children=descendants(session, lot),
        inspections=inspections.inspections_for(session, lot),
        split_form=split_form,
        inspection_form=inspection_form,
        result_rows=result_rows or [{} for _ in range(RESULT_ROWS)],
        result_error=result_error,
        result_message=result_error.translated(_) if result_error is not None else None,
        result_units=RESULT_UNITS,
        recall_form=RecallForm(),
        label_url=_qr_target(lot),
        short_url=gs1.short_url(_base_url(), lot.code),
        staff=staff,
        affected=_shop().orders_for_lot(session, lot.id) if lot.recalled_at and staff else [],
    )


@bp.post("/trace/lots/<int:lot_id>/split")
@role_required(*FARM_ROLES)
def split(lot_id: int):
    """Pack part of a lot into packs of equal size, each with its own code and label."""
    lot = _lot_or_404(lot_id)
    products = _products()
    form = SplitForm()
    form.product_id.choices = _product_choices(list(products.values()))
    if not form.validate_on_submit() or form.count.data is None:
        flash(_("Give the number of packs and the size of each."), "error")
        return redirect(url_for("trace.lot", lot_id=lot.id))
    with attempt() as result:
        packs = lots.split_lot(
            db_session(),
            lot,
            [form.size.data] * form.count.data,
            product=products.get(form.product_id.data or 0),
            user_id=_uid(),
        )
    if not result.ok:
        return redirect(url_for("trace.lot", lot_id=lot.id))
    _stories_changed()
    flash(_("%(count)d packs made. Print their labels now.", count=len(packs)), "success")
    return redirect(url_for("trace.labels", lot=[p.id for p in packs]))


@bp.get("/trace/check-in")
@role_required(*STAFF_ROLES)
def check_in_list():
    """入库验收: farmers' lots waiting to be weighed and graded at the sales centre."""
    session = db_session()
    waiting = lots.waiting_for_check_in(session)
    return render_template("trace/check_in.html", waiting=waiting, made_of=lots.made_of(session, waiting))


@bp.post("/trace/lots/<int:lot_id>/check-in", endpoint="check_in")
@role_required(*STAFF_ROLES)
def check_in_lot(lot_id: int):
    """Check a lot in with the weighed quantity and a grade; only then is it stock."""
    lot = _lot_or_404(lot_id)
    with attempt() as result:
        lots.check_in(
            db_session(),
            lot,
            request.form.get("weighed", ""),
            request.form.get("grade") or None,
            user_id=_uid(),
        )
    if result.ok:
        _stories_changed()
        flash(
            _(
                "Lot %(lot)s checked in: %(qty)s %(unit)s.",
                lot=lot.lot_number,
                qty=lot.quantity,
                unit=lot.unit,
            ),
            "success",
        )
    return redirect(url_for("trace.check_in_list"))


@bp.post("/trace/lots/<int:lot_id>/inspections")
@role_required(*FARM_ROLES)
def add_inspection(lot_id: int):
    """Record a residue test with its certificate."""
    lot = _lot_or_404(lot_id)
    form = InspectionForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(error, "error")
        return redirect(url_for("trace.lot", lot_id=lot.id))
    stored = name = None
    upload = form.certificate.data
    rows = [
        {key: request.form.get(f"results-{i}-{key}", "") for key in inspections.FIELDS}
        for i in range(RESULT_ROWS)
    ]
    with attempt(flash_error=False) as result:
        measured = inspections.read_results(rows)
        if upload and getattr(upload, "filename", ""):
            name = upload.filename
            stored = inspections.save_certificate(_certificate_dir(), name, upload.read())
        inspections.record_inspection(
            db_session(),
            lot,
            form.lab.data,
            form.tested_on.data or _today(),
            form.result.data,
            summary=form.summary.data,
            certificate_file=stored,
            certificate_name=name,
            results=measured,
            user_id=_uid(),
        )
    if not result.ok:
        if stored:  # the inspection was refused: its certificate must not linger
            (_certificate_dir() / stored).unlink(missing_ok=True)
        if isinstance(result.exception, inspections.ResultError):  # shown beside its row
            return _lot_page(lot, inspection_form=form, result_rows=rows, result_error=result.exception), 400
        flash(result.error or "", "error")
        return redirect(url_for("trace.lot", lot_id=lot.id))
    _stories_changed()
    flash(_("Inspection recorded."), "success")
    return redirect(url_for("trace.lot", lot_id=lot.id))


@bp.post("/trace/lots/<int:lot_id>/recall", endpoint="recall")
@role_required(*STAFF_ROLES)
def recall_lot(lot_id: int):
    """Recall a lot and everything made from it; the shop stops selling them."""
    lot = _lot_or_404(lot_id)
    form = RecallForm()
    if not form.validate_on_submit():
        flash(_("Give a reason for the recall."), "error")
        return redirect(url_for("trace.lot", lot_id=lot.id))
    with attempt() as result:
        affected = recall.recall_lot(
            db_session(), lot, form.reason.data, user_id=_uid(), flag_orders=_shop().flag_recalled
        )
    if not result.ok:
        return redirect(url_for("trace.lot", lot_id=lot.id))
    after_recall = _shop().after_recall
    if after_recall is not None:  # committed: close the payment pages of the cancelled orders
        after_recall(db_session(), affected)
    _stories_changed()
    flash(_("%(count)d lot(s) recalled. Contact the customers listed below.", count=len(affected)), "warning")
    return redirect(url_for("trace.recalls", lot=lot.id))


@bp.get("/trace/recalls")
@role_required(*STAFF_ROLES)
def recalls():
    """Recalled lots, with the orders and customers that received them."""
    session = db_session()
    orders_for_lot = _shop().orders_for_lot
    rows = [
        (lot, descendants(session, lot), orders_for_lot(session, lot.id))
        for lot in recall.recalled_lots(session)
    ]
    return render_template("trace/recalls.html", rows=rows, highlight=request.args.get("lot", type=int))


def _merge_parts(available: list[HarvestLot]) -> list[tuple[HarvestLot, Decimal]]:
    """The quantities typed beside each lot on the merge page (empty: not in the box; a
    mistyped one refuses the whole box with its reason, rather than being left out)."""
    parts = []
    for each in available:
        raw = (request.form.get(f"qty_{each.id}") or "").strip()
        if raw:
            parts.append((each, quantity.parse_quantity(raw)))
    return parts


@bp.route("/trace/merge", methods=["GET", "POST"])
@role_required(*FARM_ROLES)
def merge():
    """Put quantities of several lots or packs into one gift box with its own code."""
    session = db_session()
    stmt = (
        select(HarvestLot)
        .where(
            HarvestLot.recalled_at.is_(None),
            HarvestLot.checked_in_at.is_not(None),  # packed only after the centre accepted it
            HarvestLot.remaining > 0,
        )
        .order_by(HarvestLot.harvested_on.desc(), HarvestLot.id.desc())
        .limit(100)
    )
    available = list(session.scalars(_mine(stmt, trace_access.lot_condition(current_user))))
    products = _products()
    form = MergeForm()
    products = {k: p for k, p in products.items() if lots.may_box_as(p, current_user)}
    form.product_id.choices = _product_choices(list(products.values()), blank=False)
    if request.method == "GET":
        boxes = sorted(p.id for p in products.values() if p.unit == "box")
        if boxes:
            form.product_id.data = boxes[0]
    if form.validate_on_submit():
        product = products.get(form.product_id.data or 0)
        with attempt() as result:
            box = lots.merge_lots(
                session,
                _merge_parts(available),
                product_id=product.id if product else None,
                unit=product.unit if product else "box",
                user_id=_uid(),
            )
        if result.ok:
            _stories_changed()
            flash(_("Gift box %(lot)s made.", lot=box.lot_number), "success")
            return redirect(url_for("trace.lot", lot_id=box.id))
    elif request.method == "POST":  # a product not offered to this user (lots.may_box_as)
        flash(_("Choose one of the products offered for a gift box."), "error")
    return render_template("trace/merge.html", form=form, available=available)


# --- API: EPCIS 2.0 ---------------------------------------------------------------------


@bp.get("/api/v1/lots/<lot_ref>/epcis")
@role_required(*FARM_ROLES)
def api_epcis(lot_ref: str):
    """The lot's events as an EPCIS 2.0 JSON-LD document (lot number or trace code)."""
    session = db_session()
    lot = lots.lot_by_number(session, lot_ref) or lots.lot_by_code(session, lot_ref)
    if lot is None or not trace_access.can_manage_lot(current_user, lot):
        abort(404, f"no lot {lot_ref!r}")
    cfg = settings()
    document = epcis.export_lot(
        session, lot, _base_url(), cfg.gs1_company_prefix, sales_of=_shop().sales_of, gln=cfg.gs1_gln
    )
    response = Response(json.dumps(document, ensure_ascii=False, indent=1), mimetype="application/ld+json")
    if request.args.get("download"):
        response.headers["Content-Disposition"] = f'attachment; filename="epcis-{lot.lot_number}.jsonld"'
    return response
