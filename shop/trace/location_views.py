"""Public location pages: what an EPCIS ``readPoint``/``bizLocation`` URL resolves to.

  /loc/greenhouse/<code>   a greenhouse (HTML; JSON-LD with ?format=json or Accept: application/ld+json)
  /loc/sales-centre        the cooperative's sales centre (入库验收, sales, recalls)

A blueprint of its own (``trace_loc``), registered by the app beside the trace blueprint.
"""

from __future__ import annotations

import json

from flask import Blueprint, Response, abort, render_template, request

from core.web import db_session, settings
from shop.trace import locations

bp = Blueprint("trace_loc", __name__)
JSON_TYPES = ("application/ld+json", "application/json")


def _wants_json() -> bool:
    fmt = (request.args.get("format") or "").lower()
    if fmt in ("json", "jsonld", "json-ld"):
        return True
    if fmt == "html":
        return False
    best = request.accept_mimetypes.best_match([*JSON_TYPES, "text/html"], default="text/html")
    return best in JSON_TYPES and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def _render(place: locations.Place, path: str) -> Response:
    cfg = settings()
    url = cfg.public_base_url.rstrip("/") + path  # the id the EPCIS export names (without a GLN)
    sgln = locations.sgln(
        cfg.gs1_gln, cfg.gs1_company_prefix, place.code if place.kind == "greenhouse" else None
    )
    if _wants_json():
        data = place.json_ld(url)
        if sgln:
            data["sameAs"] = sgln  # the id the EPCIS export names when a GLN is configured
        if cfg.gs1_gln:
            data["globalLocationNumber"] = cfg.gs1_gln
        body = json.dumps(data, ensure_ascii=False, indent=1)
        response = Response(body, mimetype="application/ld+json")
    else:
        response = Response(render_template("trace/location.html", place=place, url=url, sgln=sgln))
    response.headers["Vary"] = "Accept"
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/loc/greenhouse/<path:code>")
def greenhouse_location(code: str):
    place = locations.greenhouse_place(db_session(), code)
    if place is None:
        abort(404)
    return _render(place, locations.greenhouse_path(place.code or code))


@bp.get(f"/loc/{locations.SALES_CENTRE}")
def sales_centre_location():
    return _render(locations.sales_centre_place(db_session()), locations.sales_centre_path())
