"""The shop: catalogue for everyone, orders for customers, order desk for staff."""

from __future__ import annotations

from flask import Blueprint, render_template

from core.web import role_required

bp = Blueprint("shop", __name__, url_prefix="/shop")


@bp.get("/")
def index():
    """The catalogue."""
    return render_template("shop/index.html")


@bp.get("/orders")
@role_required("customer", "admin", "official", "farmer")
def my_orders():
    """The logged-in user's own orders."""
    return render_template("shop/orders.html")
