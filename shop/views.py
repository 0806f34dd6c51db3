"""The shop for customers: catalogue, product pages, cart, checkout, order pages."""

from __future__ import annotations

import time
from datetime import date

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup

from core import clock
from core.errors import N_
from core.text import fold_width
from core.web import (
    attempt,
    bind_session,
    current_session_id,
    db_session,
    on_login,
    role_required,
    settings,
)
from shop import cart as carts
from shop import catalog, checkout, orders, payments
from shop import settings as shop_settings
from shop.models import Product

bp = Blueprint("shop", __name__, url_prefix="/shop")
CART_KEY = "shop_cart"
RECENT_KEY = "shop_orders"


def _hand_cart_over(db, old_session: dict, user) -> dict:
    token = carts.hand_over(db, old_session.get(CART_KEY), user.id)
    return {CART_KEY: token} if token else {}


@bp.record_once
def _carry_cart_over_login(state) -> None:
    """The guest's cart is moved to the user who logs in (nothing else of the shop's session)."""
    on_login(state.app, _hand_cart_over)


def _today() -> date:
    return clock.today()


def _user_id() -> int | None:
    return current_user.id if current_user.is_authenticated else None


def _cart(create: bool = False):
    cart = carts.get_cart(db_session(), session.get(CART_KEY))
    if cart is None and create:
        cart = carts.new_cart(db_session(), _user_id())
        session[CART_KEY] = cart.token
    return cart


def _remember_order(token: str) -> None:
    bind_session()  # the server knows this session, so a copy of the cookie dies with it
    recent = [t for t in session.get(RECENT_KEY, []) if t != token]
    session[RECENT_KEY] = ([token] + recent)[:10]


TOKEN_SLOT = "__csrf_token_slot__"


def _listing_html(q: str, category: str | None) -> str:
    """The search form, chips and product grid, kept for a few seconds when browsing.

    Listing pages are the busiest; stock shown there may be a few seconds old (the product
    page and checkout always read live stock). ``shop_listing_cache_seconds`` in
    ``SHOP_LISTING_CACHE_SECONDS`` sets the lifetime (default 3 s; 0 in tests). Searches are not kept.
    """
    ttl = _ttl()
    key = (_locale(), category)
    cache = current_app.extensions.setdefault("shop.listing", {})
    now = time.monotonic()
    if ttl > 0 and not q:
        hit = cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
    listed = catalog.list_products(db_session(), today=_today(), q=q or None, category_slug=category)
    html = render_template(
        "shop/_listing.html",
        listed=listed,
        categories=catalog.categories(db_session()),
        q=q,
        category=category,
        token=TOKEN_SLOT,
    )
    if ttl > 0 and not q:
        if len(cache) > 100:
            cache.clear()
        cache[key] = (now + ttl, html)
    return html


@bp.get("/")
def index():
    """The catalogue: categories, search, products with stock."""
    q = (request.args.get("q") or "").strip()[:60]
    category = (request.args.get("category") or "")[:60] or None
    listing = _listing_html(q, category).replace(TOKEN_SLOT, generate_csrf())
    return render_template(
        "shop/index.html",
        listing=Markup(listing),
        q=q,
        category=category,
        cart_count=carts.count(_cart()) if session.get(CART_KEY) else 0,
        stripe_enabled=settings().stripe_enabled,
    )


def _ttl() -> float:
    cfg = settings()
    if cfg.shop_listing_cache_seconds is not None:
        return cfg.shop_listing_cache_seconds
    return 0.0 if cfg.env == "testing" else 3.0


def _product_info(slug: str) -> dict | None:
    """What a product page shows that changes rarely (kept like the listing; stock is not in it)."""
    ttl = _ttl()
    key = ("product", _locale(), slug)
    cache = current_app.extensions.setdefault("shop.listing", {})
    now = time.monotonic()
    hit = cache.get(key) if ttl > 0 else None
    if hit is not None and hit[0] > now:
        return hit[1]
    item = catalog.get_product(db_session(), slug)
    if item is None or not item.active:
        return None
    locale = _locale()
    info = {
        "id": item.id,
        "slug": item.slug,
        "unit": item.unit,
        "name": item.name(locale),
        "on_sale": item.on_sale(_today()),
        "category_slug": item.category.slug if item.category else None,
        "category_name": item.category.name(locale) if item.category else None,
        "html": Markup(render_template("shop/_product_info.html", product=item)),
    }
    if ttl > 0:
        if len(cache) > 200:
            cache.clear()
        cache[key] = (now + ttl, info)
    return info


@bp.get("/p/<slug>")
def product(slug: str):
    """A product page: photo, price, the producing household and greenhouse; live stock and lots."""
    info = _product_info(slug)
    if info is None:
        abort(404)
    lots = catalog.available_lots(db_session(), info["id"])
    stock = sum((lot.remaining for lot in lots), start=0)
    return render_template(
        "shop/product.html",
        info=info,
        lots=lots,
        stock=stock,
        on_sale=info["on_sale"],
    )


@bp.post("/cart/add")
def cart_add():
    """Add a product (optionally from a chosen lot) to the cart."""
    item = db_session().get(Product, request.form.get("product_id", type=int) or 0)
    if item is None or not item.active:
        abort(404)
    lot_id = request.form.get("lot_id", type=int) or None
    bind_session()  # before any write: the cart lives in a session the server knows
    with attempt() as result:
        qty = carts.parse_quantity(request.form.get("quantity", "1"), item.unit)
        cart = _cart(create=True)
        carts.add_item(db_session(), cart, item, qty, today=_today(), lot_id=lot_id)
    if not result.ok:
        return redirect(url_for("shop.product", slug=item.slug))
    flash(_("Added to your cart."), "success")
    if request.form.get("next") == "catalogue":
        return redirect(url_for("shop.index"))
    return redirect(url_for("shop.view_cart"))


@bp.get("/cart")
def view_cart():
    """The cart with totals."""
    cart = _cart()
    lines = carts.lines(cart)
    return render_template(
        "shop/cart.html",
        lines=lines,
        total=sum(line.total_fen for line in lines),
        stripe_enabled=settings().stripe_enabled,
    )


@bp.post("/cart/update")
def cart_update():
    """Change a line's quantity (0 removes it)."""
    cart = _cart()
    if cart is None:
        return redirect(url_for("shop.view_cart"))
    item_id = request.form.get("item_id", type=int) or 0
    item = next((i for i in cart.items if i.id == item_id), None)
    with attempt():
        if item is None:
            raise carts.CartError(N_("That item is no longer in your cart."))
        qty = carts.parse_quantity(request.form.get("quantity", "0"), item.product.unit)
        carts.set_quantity(db_session(), cart, item_id, qty)
    return redirect(url_for("shop.view_cart"))


def _contact_from(form) -> checkout.Contact:
    return checkout.Contact(
        name=form.get("name", ""),
        phone=" ".join(fold_width(form.get("phone", "")).split()),
        email=form.get("email", "").strip(),
        fulfilment=form.get("fulfilment", "pickup"),
        address=form.get("address", ""),
        note=form.get("note", ""),
        payment_method=form.get("payment_method", "cash"),
    )


@bp.route("/checkout", methods=["GET", "POST"])
def checkout_page():
    """Contact, delivery or pickup, payment method; placing the order reserves the stock."""
    cart = _cart()
    stripe_enabled = settings().stripe_enabled
    lines = carts.lines(cart)
    if request.method == "GET":
        if not lines:
            return redirect(url_for("shop.view_cart"))
        defaults = {"payment_method": "stripe" if stripe_enabled else "cash", "fulfilment": "pickup"}
        if current_user.is_authenticated:
            defaults.update(
                name=current_user.display_name, email=current_user.email or "", phone=current_user.phone or ""
            )
        return _checkout_form(lines, defaults, cart.version if cart else 0, stripe_enabled)
    if cart is None:
        return redirect(url_for("shop.view_cart"))
    contact = _contact_from(request.form)
    posted_version = request.form.get("version", type=int)
    if posted_version is not None and posted_version != cart.version:
        # the form belongs to an earlier cart version: that order was already placed (double submit)
        placed = _order_for_version(cart, posted_version)
        if placed is not None:
            return redirect(url_for("shop.order_page", token=placed.token))
    problems = contact.field_problems(stripe_enabled=stripe_enabled)
    if problems or not lines:
        field_errors = {field: _(p) for field, p in problems.items()}
        return _checkout_form(
            lines,
            request.form,
            cart.version,
            stripe_enabled,
            field_errors,
            [] if lines else [_("Your cart is empty.")],
        ), 400
    bind_session()  # before any write: the order is opened only from this session
    with attempt(flash_error=False) as result:
        order = checkout.place_order(
            db_session(), cart, contact, user_id=_user_id(), today=_today(), stripe_enabled=stripe_enabled
        )
    if not result.ok:
        exc = result.exception
        if isinstance(exc, checkout.OutOfStock):  # the product's name in the reader's language
            flash(
                _(
                    "Sorry, there is not enough %(name)s left (%(available)s available).",
                    name=exc.product.name(_locale()),
                    available=f"{exc.available.normalize():f}",
                ),
                "error",
            )
        else:
            flash(result.error or "", "error")
        return redirect(url_for("shop.view_cart"))
    _remember_order(order.token)
    if order.payment_method == "stripe" and order.status == "pending_payment":
        return _to_stripe(order)
    return redirect(url_for("shop.order_page", token=order.token))


def _checkout_form(lines, form, version: int, stripe_enabled: bool, field_errors=None, errors=None) -> str:
    """The checkout form; refused fields carry their message beside them (``field_errors``);
    fields without a place of their own (the radio groups) are listed at the top."""
    field_errors = dict(field_errors or {})
    errors = list(errors or [])
    for field in ("fulfilment", "payment_method"):  # radio groups: said at the top
        if field in field_errors:
            errors.append(field_errors.pop(field))
    return render_template(
        "shop/checkout.html",
        lines=lines,
        total=sum(ln.total_fen for ln in lines),
        form=form,
        stripe_enabled=stripe_enabled,
        version=version,
        errors=errors,
        field_errors=field_errors,
        centre=shop_settings.get(db_session()),
        hold_rules=shop_settings.get(db_session()),
    )


def _order_for_version(cart, version: int):
    from sqlalchemy import select

    from shop.models import Order

    return db_session().scalar(select(Order).where(Order.checkout_key == f"{cart.token}:{version}"))


def _locale() -> str:
    from flask_babel import get_locale

    locale = get_locale()
    return "zh_CN" if locale and locale.language == "zh" else "en"


def _to_stripe(order):
    base = settings().public_base_url
    with attempt() as result:
        url = payments.start_checkout(
            db_session(),
            order,
            settings(),
            success_url=base + url_for("shop.order_page", token=order.token),
            cancel_url=base + url_for("shop.order_page", token=order.token, cancelled=1),
        )
    if not result.ok:
        return redirect(url_for("shop.order_page", token=order.token))
    return redirect(url, code=303)


def _order_here(token: str):
    """The order behind a token, if this browser may open it (else 404): the logged-in user's
    own order, or one placed in this very session (a session the server still knows, so a
    cookie kept from before a login or logout opens nothing)."""
    order = orders.get_by_token(db_session(), token)
    if order is None:
        abort(404)
    mine = current_user.is_authenticated and order.user_id == current_user.id
    here = current_session_id() is not None and order.token in session.get(RECENT_KEY, [])
    if not (mine or here):
        abort(404)
    return order


@bp.get("/order/<token>")
def order_page(token: str):
    """An order's real state; also the page Stripe sends the customer back to.

    It may be shown before the webhook arrives: it then says the payment is being
    confirmed. It never marks an order paid by itself.
    """
    order = _order_here(token)
    stripe_state = None
    returned = request.args.get("session_id")
    waiting = order.status == "pending_payment" and order.payment_method == "stripe"
    if waiting and returned and returned == order.stripe_session_id:
        stripe_state = payments.checkout_session_state(settings(), order.stripe_session_id)
    _remember_order(order.token)
    return render_template(
        "shop/order.html",
        order=order,
        recalled=orders.recalled_lines(db_session(), order),
        centre=shop_settings.get(db_session()),
        stripe_state=stripe_state,
        came_back_cancelled=bool(request.args.get("cancelled")),
        stripe_enabled=settings().stripe_enabled,
    )


@bp.post("/order/<token>/pay")
def order_pay(token: str):
    """Go (back) to Stripe Checkout for an unpaid order."""
    order = _order_here(token)
    return _to_stripe(order)


@bp.post("/order/<token>/cancel")
def order_cancel(token: str):
    """The customer cancels an unpaid order; its stock goes back on sale."""
    order = _order_here(token)
    with attempt() as result:
        orders.cancel(db_session(), order, user_id=_user_id(), reason="cancelled by customer")
    if result.ok:
        payments.expire_checkout(settings(), order.stripe_session_id)
        flash(_("Your order was cancelled."), "success")
    return redirect(url_for("shop.order_page", token=token))


@bp.get("/orders")
@role_required("customer", "admin", "official", "farmer")
def my_orders():
    """The logged-in user's own orders (and those placed from this browser)."""
    mine = orders.orders_of_user(db_session(), current_user.id)
    return render_template(
        "shop/orders.html",
        orders=mine,
        recalled=orders.recalled_lines_of(db_session(), mine),
        centre=shop_settings.get(db_session()),
    )


@bp.get("/recent")
def recent_orders():
    """Orders placed from this browser (guests have no account)."""
    from sqlalchemy import select

    from shop.models import Order

    tokens = session.get(RECENT_KEY, []) if current_session_id() else []
    rows = (
        list(db_session().scalars(select(Order).where(Order.token.in_(tokens)).order_by(Order.id.desc())))
        if tokens
        else []
    )
    return render_template(
        "shop/orders.html",
        orders=rows,
        recent=True,
        recalled=orders.recalled_lines_of(db_session(), rows),
        centre=shop_settings.get(db_session()),
    )


@bp.post("/recent/forget")
def forget_browser():
    """A guest at a shared phone or kiosk ends this browser's session: its cart and the orders
    placed from it are no longer listed or opened here (the orders themselves stay)."""
    from core.web import log_out

    log_out()
    flash(_("This browser has forgotten your orders and cart."), "success")
    return redirect(url_for("shop.index"))
