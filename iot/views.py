"""Greenhouse pages: overview for farmers (their own) and officials (all)."""

from __future__ import annotations

from flask import Blueprint, render_template

from core.web import role_required

bp = Blueprint("iot", __name__, url_prefix="/iot")


@bp.get("/")
@role_required("admin", "official", "farmer")
def index():
    """The greenhouses the user may see."""
    return render_template("iot/index.html")
