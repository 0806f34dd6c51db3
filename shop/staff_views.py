"""The order desk and catalogue management for staff (admin, official)."""

from __future__ import annotations

from decimal import Decimal

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from coop.models import Household
from core import audit, clock, parse
from core.errors import N_
from core.money import parse_yuan
from core.web import attempt, db_session, json_error, role_required, settings, wants_json
from shop import catalog, checkout, orders, payments, settlement, webhooks
from shop.models import Order, Product, StripeEvent
from shop.trace.models import HarvestLot

bp = Blueprint("shop_staff", __name__, url_prefix="/shop/staff")
STAFF = ("admin", "official")


@bp.app_template_filter("attention_notes")
def _attention_notes(attention: str | None) -> list[str]:
    """An order's staff notes in the reader's language."""
    from shop import notes

    return notes.texts(attention, _)


def _back(default: str):
    """Where a form asked to go back to (a path on this site only), else ``default``."""
    target = request.form.get("next") or ""
    return redirect(target if target.startswith("/") and not target.startswith("//") else default)


def _answer(result: attempt, done: str, default: str):
    """After a payment or refund action: JSON (200, 409 when it was already done, 400 when
    refused) for API clients, else the flashed message and a redirect back."""
    if wants_json():
        if result.ok:
            return jsonify({"ok": True, "message": done})
        status = 409 if isinstance(result.exception, payments.AlreadyDone) else 400
        return json_error(status, result.error or "", already_done=status == 409)
    if result.ok:
        flash(done, "success")
    return _back(default)


def _problem_context(events: list[StripeEvent]) -> dict:
    """What the problem list needs: the events' orders (number, total) and the texts."""
    ids = {e.order_id for e in events if e.order_id}
    found = list(db_session().scalars(select(Order).where(Order.id.in_(ids)))) if ids else []
    return {
        "problem_events": events,
        "problem_orders": {o.id: o for o in found},
        "problems": webhooks.PROBLEMS,
    }


def _order(number: str) -> Order:
    order = orders.get_by_number(db_session(), number)
    if order is None:
        abort(404)
    return order


@bp.get("/")
@role_required(*STAFF)
def order_list():
    """All orders, filtered by state or search; orders and events that need attention first."""
    status = request.args.get("status") or None
    attention = bool(request.args.get("attention"))
    q = (request.args.get("q") or "").strip() or None
    s = db_session()
    return render_template(
        "shop/staff/orders.html",
        orders=orders.list_orders(s, status=status, attention=attention, q=q),
        counts=orders.counts_by_status(s),
        flagged=orders.list_orders(s, attention=True, limit=50),
        **_problem_context(webhooks.open_problems(s)),
        status=status,
        q=q or "",
        states=orders.TRANSITIONS.keys(),
        stripe_enabled=settings().stripe_enabled,
    )


@bp.get("/order/<number>")
@role_required(*STAFF)
def order_detail(number: str):
    """One order: lines and the lots they came from, payments, refunds, history, actions."""
    order = _order(number)
    lot_ids = {a.lot_id for line in order.lines for a in line.lots}
    lots = (
        {lot.id: lot for lot in db_session().scalars(select(HarvestLot).where(HarvestLot.id.in_(lot_ids)))}
        if lot_ids
        else {}
    )
    recalled = orders.recalled_lines(db_session(), order)
    return render_template(
        "shop/staff/order.html",
        order=order,
        lots=lots,
        recalled=recalled,
        history=audit.history(db_session(), "shop_orders", order.id),
        refund_key=payments.next_refund_key(order),
        **_problem_context(webhooks.open_problems(db_session(), order_id=order.id)),
        actions=[
            a
            for a, (src, _t) in orders.STAFF_ACTIONS.items()
            if order.status in ((src,) if isinstance(src, str) else src)
            and not (a == "ship" and order.fulfilment != "delivery")
            and not (a == "ready" and order.fulfilment != "pickup")
        ],
    )


@bp.post("/order/<number>/action")
@role_required(*STAFF)
def order_action(number: str):
    """Pack, ship, make ready for pickup or complete an order."""
    order = _order(number)
    with attempt() as result:
        orders.staff_action(db_session(), order, request.form.get("action", ""), user_id=current_user.id)
    if result.ok:
        flash(_("Order updated."), "success")
    elif isinstance(result.exception, orders.RecalledGoods):  # refused and rolled back: flag it
        with attempt():
            orders.flag_recalled(db_session(), result.exception.lots)
    return _back(url_for("shop_staff.order_detail", number=number))


@bp.post("/order/<number>/paid")
@role_required(*STAFF)
def order_paid(number: str):
    """Record cash or a bank transfer taken at the sales centre (refused for a recalled line;
    a second click hears "already paid")."""
    order = _order(number)
    with attempt(flash_error=not wants_json()) as result:
        payments.record_counter_payment(
            db_session(),
            order,
            method=request.form.get("method", "cash"),
            user_id=current_user.id,
            receipt=request.form.get("receipt", "").strip()[:200],
        )
    back = url_for("shop_staff.order_detail", number=number)
    return _answer(result, _("Payment recorded and posted to the books."), back)


@bp.post("/order/<number>/cancel")
@role_required(*STAFF)
def order_cancel(number: str):
    """Cancel an unpaid order; its stock goes back on sale."""
    return _cancel(number, url_for("shop_staff.order_detail", number=number))


def _cancel(number: str, back: str):
    """Cancel an unpaid order (order page or holds page), close its Checkout Session, go back."""
    order = _order(number)
    with attempt() as result:
        orders.cancel(db_session(), order, user_id=current_user.id, reason=request.form.get("reason", ""))
    if result.ok:
        payments.expire_checkout(settings(), order.stripe_session_id)
        flash(_("Order cancelled; stock returned."), "success")
    return redirect(back)


@bp.post("/order/<number>/refund")
@role_required(*STAFF)
def order_refund(number: str):
    """Refund all or part of a paid order (through Stripe for online payments).

    The form carries its own idempotency key: a second click of the same form (also six at
    once) refunds once and hears "already made".
    """
    order = _order(number)
    with attempt(flash_error=not wants_json()) as result:
        line = request.form.get("line_id") or ""
        line_id = parse.whole_number(line, lo=1) if line else None
        key = (request.form.get("key") or "").strip()[:96] or payments.next_refund_key(order)
        payments.refund(
            db_session(),
            order,
            parse_yuan(request.form.get("amount", "")),
            key=key,
            settings=settings(),
            reason=request.form.get("reason", "").strip(),
            user_id=current_user.id,
            line_id=line_id,
        )
    return _answer(
        result, _("Refund made and posted to the books."), url_for("shop_staff.order_detail", number=number)
    )


@bp.post("/order/<number>/payment/<int:payment_id>/give-back")
@role_required(*STAFF)
def order_give_back(number: str, payment_id: int):
    """Give back a second payment for an order already paid (through Stripe, or as cash given
    back): booked against 211 商城待退款; the sale, its stock and the order stay as they are."""
    order = _order(number)
    payment = next((p for p in order.payments if p.id == payment_id), None)
    if payment is None:
        abort(404)
    with attempt(flash_error=not wants_json()) as result:
        payments.refund_duplicate(
            db_session(),
            payment,
            settings=settings(),
            user_id=current_user.id,
            note=request.form.get("note", "").strip(),
        )
    return _answer(
        result,
        _("The second payment was given back and posted to the books."),
        url_for("shop_staff.order_detail", number=number),
    )


@bp.post("/order/<number>/resolve")
@role_required(*STAFF)
def order_resolve(number: str):
    """Clear an order's attention flag with a note of what was done."""
    order = _order(number)
    with attempt():
        orders.resolve_attention(
            db_session(), order, user_id=current_user.id, note=request.form.get("note", "").strip()
        )
    return redirect(url_for("shop_staff.order_detail", number=number))


@bp.post("/events/resolve")
@role_required(*STAFF)
def event_resolve():
    """Clear a flagged Stripe event from the attention list, with a note of what was done."""
    with attempt() as result:
        webhooks.resolve(
            db_session(),
            request.form.get("event_id", ""),
            user_id=current_user.id,
            note=request.form.get("note", "").strip(),
        )
    if result.ok:
        flash(_("Marked as resolved."), "success")
    return _back(url_for("shop_staff.order_list"))


@bp.get("/packing")
@role_required(*STAFF)
def packing():
    """Paid orders to pack, and the total of each product to pick from the store."""
    paid, items = orders.packing_list(db_session())
    return render_template("shop/staff/packing.html", orders=paid, items=items)


@bp.get("/pickup")
@role_required(*STAFF)
def pickup():
    """Orders to hand over (and take payment for) at the sales centre."""
    return render_template("shop/staff/pickup.html", orders=orders.pickup_list(db_session()))


@bp.post("/expire")
@role_required(*STAFF)
def expire():
    """Cancel lapsed reservations now (a cron job runs ``flask shop expire`` too)."""
    with attempt():
        count = checkout.expire_reservations(db_session())
    flash(_("%(count)d lapsed reservations cancelled.", count=count), "success")
    return redirect(url_for("shop_staff.order_list"))


@bp.get("/holds")
@role_required(*STAFF)
def holds():
    """Current holds: every unpaid order keeping stock (who, phone, what, until when, guest or
    account), with confirm and cancel."""
    from shop import settings as shop_settings

    session = db_session()
    return render_template(
        "shop/staff/holds.html",
        holds=checkout.current_holds(session),
        rules=shop_settings.get(session),
        now=clock.now(),
    )


@bp.post("/holds/<number>/confirm")
@role_required(*STAFF)
def hold_confirm(number: str):
    """Keep an unpaid pickup order for the confirmed time (e.g. after calling the customer)."""
    order = _order(number)
    with attempt() as result:
        checkout.confirm_hold(db_session(), order, user_id=current_user.id)
    if result.ok:
        until = clock.local(order.reserved_until).strftime("%Y-%m-%d %H:%M") if order.reserved_until else ""
        flash(_("Hold confirmed until %(time)s.", time=until), "success")
    return redirect(url_for("shop_staff.holds"))


@bp.post("/holds/<number>/cancel")
@role_required(*STAFF)
def hold_cancel(number: str):
    """Cancel an unpaid order from the holds page; its stock goes back on sale."""
    return _cancel(number, url_for("shop_staff.holds"))


# --- catalogue --------------------------------------------------------------------------


@bp.get("/products")
@role_required(*STAFF)
def products():
    """Every product with price, season and stock."""
    today = clock.today()
    listed = catalog.list_products(db_session(), today=today, include_off_season=True)
    inactive = list(
        db_session().scalars(select(Product).where(Product.active.is_(False)).order_by(Product.id))
    )
    return render_template("shop/staff/products.html", listed=listed, inactive=inactive, today=today)


def _product_form(product: Product | None):
    s = db_session()
    households = list(s.scalars(select(Household).where(Household.active.is_(True)).order_by(Household.code)))
    cats = catalog.categories(s)
    errors: list[str] = []
    if request.method == "POST":
        with attempt(flash_error=False) as result:
            values = catalog.parse_product_form(request.form)
            saved = catalog.save_product(
                s,
                product,
                values,
                user_id=current_user.id,
                slug=request.form.get("slug"),
                commission_pct=request.form.get("commission_pct", type=int),
            )
            supplier_ids = [int(h) for h in request.form.getlist("suppliers") if h.isdigit()]
            catalog.set_suppliers(s, saved, supplier_ids)
        if result.ok:
            flash(_("Product saved."), "success")
            return redirect(url_for("shop_staff.stock", product_id=saved.id))
        errors.append(result.error or "")
        product = s.get(Product, product.id) if product is not None else None
    commission = catalog.commission_pct(s, product.id) if product else catalog.DEFAULT_COMMISSION_PCT
    return render_template(
        "shop/staff/product_form.html",
        product=product,
        households=households,
        categories=cats,
        errors=errors,
        units=catalog.UNITS,
        commission=commission,
        form=request.form if request.method == "POST" else None,
    ), (400 if errors else 200)


@bp.route("/products/new", methods=["GET", "POST"])
@role_required(*STAFF)
def product_new():
    """Add a product to the catalogue."""
    return _product_form(None)


@bp.route("/products/<int:product_id>/edit", methods=["GET", "POST"])
@role_required(*STAFF)
def product_edit(product_id: int):
    """Change a product's names, price, season, unit, photo and suppliers."""
    product = db_session().get(Product, product_id)
    if product is None:
        abort(404)
    return _product_form(product)


@bp.route("/products/<int:product_id>/stock", methods=["GET", "POST"])
@role_required(*STAFF)
def stock(product_id: int):
    """A product's lots: receive a harvest into stock, correct a count; with the audit trail."""
    s = db_session()
    product = s.get(Product, product_id)
    if product is None:
        abort(404)
    error, error_field = None, None
    if request.method == "POST":
        with attempt(flash_error=False) as result:
            if request.form.get("lot_id"):
                lot = s.get(HarvestLot, request.form.get("lot_id", type=int))
                if lot is None or lot.product_id != product.id:
                    abort(404)
                catalog.adjust_lot(
                    s,
                    lot,
                    _decimal(request.form.get("remaining")),
                    reason=request.form.get("reason", ""),
                    user_id=current_user.id,
                )
            else:
                catalog.add_stock(
                    s,
                    product,
                    _decimal(request.form.get("quantity")),
                    household_id=request.form.get("household_id", type=int) or None,
                    harvested_on=parse.optional_date(request.form.get("harvested_on")),
                    user_id=current_user.id,
                    grade=request.form.get("grade") or None,
                    override_reason=request.form.get("override_reason") or None,
                )
        if result.ok:
            flash(_("Stock updated."), "success")
            return redirect(url_for("shop_staff.stock", product_id=product.id))
        error_field = getattr(result.exception, "field", None)
        if error_field is None:  # not about one field: said at the top of the page
            flash(result.error or "", "error")
            return redirect(url_for("shop_staff.stock", product_id=product.id))
        error = result.error
    lots = list(
        s.scalars(
            select(HarvestLot)
            .where(HarvestLot.product_id == product.id)
            .order_by(HarvestLot.harvested_on.desc(), HarvestLot.id.desc())
        )
    )
    history = audit.history(s, "shop_products", product.id)
    for lot in lots[:20]:
        history += audit.history(s, "shop_lots", lot.id)
    history.sort(key=lambda e: (e.at, e.id), reverse=True)
    households = list(s.scalars(select(Household).where(Household.active.is_(True)).order_by(Household.code)))
    return render_template(
        "shop/staff/stock.html",
        product=product,
        lots=lots,
        history=history[:50],
        households=households,
        suppliers=set(product.supplier_household_ids),
        stock=catalog.stock_of(s, product.id),
        error=error,
        error_field=error_field,
        form=request.form if error else {},
    ), (400 if error else 200)


def _decimal(raw: object) -> Decimal:
    value = parse.decimal_number(raw)
    if value is None:
        raise catalog.CatalogError(N_("Enter a quantity."))
    return value


# --- statements -------------------------------------------------------------------------


@bp.get("/statement")
@role_required(*STAFF, "farmer")
def statement():
    """Monthly statement of a supplying household: sales of its goods, commission, amount owed.

    Farmers see their own household's statement only.
    """
    s = db_session()
    today = clock.today()
    try:
        year, mon = parse.month(request.args.get("month"), default=(today.year, today.month))
    except parse.InputError as exc:
        abort(400, exc.translated(_))
    if current_user.role == "farmer":
        household_id = current_user.household_id
        if household_id is None:
            abort(403)
    else:
        household_id = request.args.get("household", type=int)
    households = (
        list(s.scalars(select(Household).order_by(Household.code))) if current_user.role != "farmer" else []
    )
    data = settlement.household_statement(s, household_id, year, mon) if household_id else None
    household = s.get(Household, household_id) if household_id else None
    return render_template(
        "shop/staff/statement.html",
        data=data,
        household=household,
        households=households,
        month=f"{year:04d}-{mon:02d}",
    )


@bp.route("/settings", methods=["GET", "POST"])
@role_required(*STAFF)
def centre_settings():
    """The sales centre's name, pickup address, opening hours and phone, shown to customers on
    the checkout, on every order page and in recall notices."""
    from shop import settings as shop_settings

    session = db_session()
    error = field = None
    if request.method == "POST":
        with attempt(flash_error=False) as result:
            shop_settings.update(
                session,
                user_id=current_user.id,
                **{
                    key: request.form[key]
                    for key in (*shop_settings.FIELDS, *shop_settings.NUMBERS)
                    if key in request.form  # a field the form did not send keeps its value
                },
            )
        if result.ok:
            flash(_("Saved."), "success")
            return redirect(url_for("shop_staff.centre_settings"))
        error = result.error
        field = result.exception.params.get("field") if result.exception else None
    return render_template(
        "shop/staff/settings.html",
        s=shop_settings.get(session),
        form=request.form if error else None,
        error=error,
        error_field=field,
    ), (400 if error else 200)
