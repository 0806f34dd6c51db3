"""Village books pages (officials) and the public disclosure pages (anyone)."""

from __future__ import annotations

from flask import Blueprint, render_template

from core.web import role_required

bp = Blueprint("coop", __name__, url_prefix="/coop")
public_bp = Blueprint("disclosure", __name__)


@bp.get("/")
@role_required("admin", "official")
def index():
    """The books' front page for village officials."""
    return render_template("coop/index.html")


@public_bp.get("/disclosure")
def disclosure_index():
    """Public disclosure (财务公开): published statements, no login needed."""
    return render_template("coop/disclosure_index.html")
