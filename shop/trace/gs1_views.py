"""GS1 pages on the trace blueprint: the Digital Link resolver and the staff's GTINs.

URL map
  /01/<gtin>                   the product (307 to the shop's product page); ?linkType=all: link set
  /01/<gtin>/10/<lot>          the lot's story, without its trace code; ?linkType=all: link set
  /trace/gtins                 staff: the GTINs of each product and net content (add, replace)
  /trace/gtins/<id>/remove     staff: forget one (lots labelled with it keep it)

A GTIN written with 8, 12 or 13 digits is redirected (301) to its 14-digit canonical form.
Lookups that find nothing are counted per client address (``shop.trace.lookup``); over
the limit the answer is 429 with ``Retry-After``. Imported by the composition root
(``app.create_app``) beside ``shop.trace.views``, whose blueprint it adds to.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response as WerkzeugResponse

from core.errors import N_
from core.web import attempt, db_session, role_required, settings
from shop.trace import gs1, gtins, inspections, resolver
from shop.trace.gtins import GtinError
from shop.trace.models import HarvestLot, ProductGtin
from shop.trace.ports import Sellable
from shop.trace.views import STAFF_ROLES, _base_url, _lang, _products, _public_page, _stories_changed, bp

LINK_TYPES = ("pip", "traceability", "certificationInfo", "recallStatus")


def _canonical(gtin: str) -> WerkzeugResponse | None:
    """A valid GTIN not written with 14 digits: a permanent redirect to the 14-digit path."""
    number = gs1.path_gtin(gtin)
    if number is None or number == gtin:
        return None
    path = request.path.replace(f"/01/{gtin}", f"/01/{number}", 1)
    query = request.query_string.decode("latin-1")
    return redirect(path + (f"?{query}" if query else ""), code=301)


def _product(product_id: int) -> Sellable | None:
    return gtins._product(db_session(), product_id)


def _product_url(product: Sellable) -> str:
    return url_for("shop.product", slug=product.slug, _external=True)


def _linkset_response(document: dict[str, Any]) -> Response:
    response = Response(json.dumps(document, ensure_ascii=False, indent=1), mimetype=gs1.LINKSET_TYPE)
    response.headers["Link"] = (
        f'<{gs1.LINKSET_CONTEXT}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
    )
    response.headers["Cache-Control"] = f"public, max-age={60}"
    return response


def _product_links(product: Sellable) -> list[gs1.Link]:
    return [gs1.Link("pip", _product_url(product), f"{product.name_zh} · {product.name_en}")]


def _lot_links(lot: HarvestLot, product: Sellable | None) -> list[gs1.Link]:
    page = gs1.lot_digital_link(_base_url(), lot) or ""
    name = f"{product.name_zh} · {product.name_en}" if product else lot.lot_number
    links = [gs1.Link("traceability", page, f"{name} · {lot.lot_number}")]
    if product is not None:
        links += _product_links(product)
    if inspections.inspections_for(db_session(), lot):
        # results (lab, date, pass or fail) are public; the certificate files open with the code
        links.append(gs1.Link("certificationInfo", page + "#inspections", f"{lot.lot_number} · inspections"))
    if lot.recalled_at is not None:
        links.append(gs1.Link("recallStatus", page, f"{lot.lot_number} · recalled"))
    return links


def _chosen(links: list[gs1.Link]) -> WerkzeugResponse | None:
    """``?linkType=``: ``all`` the link set; a GS1 link type the lot has, a 307 to it."""
    wanted = gs1.link_type(request.args.get("linkType"))
    if wanted is None:
        return None
    anchor = _base_url() + request.path  # the Digital Link as printed (PUBLIC_BASE_URL)
    if wanted == "all":
        return _linkset_response(gs1.linkset(anchor, links))
    target = next((link for link in links if link.rel == wanted), None)
    if target is None or target.href.split("#")[0].split("?")[0] == anchor:
        return None  # not offered, or this very page: the default
    return redirect(target.href, code=307)


@bp.get("/01/<gtin>")
def product_by_gtin(gtin: str):
    """A GTIN alone: the product's page in the shop (the default link, gs1:pip)."""
    canonical = _canonical(gtin)
    if canonical is not None:
        return canonical
    product_id = resolver.product_id_by_gtin(gtin)
    product = _product(product_id) if product_id is not None else None
    if product is None:
        return _public_page(None)
    links = _product_links(product)
    return _chosen(links) or redirect(links[0].href, code=307)


@bp.get("/01/<gtin>/10/<path:lot_number>")
def public_by_digital_link(gtin: str, lot_number: str):
    """The trace page at its GS1 Digital Link address (GTIN + batch/lot), without the code."""
    canonical = _canonical(gtin)
    if canonical is not None:
        return canonical
    lot = resolver.lot_by_link(gtin, lot_number)
    if lot is None:
        return _public_page(None)
    product = _product(lot.product_id) if lot.product_id is not None else None
    return _chosen(_lot_links(lot, product)) or _public_page(lot, holds_code=False)


# --- staff: GTINs per product and net content -------------------------------------------


def _gtins_page(form: MultiDict[str, str] | None = None, error: GtinError | None = None, status: int = 200):
    session = db_session()
    products = list(_products().values())
    rows = gtins.all_gtins(session)
    by_product: dict[int, list[ProductGtin]] = {}
    for row in rows:
        by_product.setdefault(row.product_id, []).append(row)
    in_use = gtins.net_contents_in_use(session, products)
    missing = {}
    for p in products:
        have = {r.net_content for r in by_product.get(p.id, [])}
        missing[p.id] = [key for key in in_use.get(p.id, []) if key not in have]
    return (
        render_template(
            "trace/gtins.html",
            products=products,
            by_product=by_product,
            missing=missing,
            read=gtins.read_net_content,
            form=form or MultiDict(),
            error=error.translated(_) if error else None,
            error_field=error.field if error else None,
            prefix=settings().gs1_company_prefix,
            lang=_lang(),
        ),
        status,
    )


@bp.get("/trace/gtins")
@role_required(*STAFF_ROLES)
def gtins_page():
    """Every product's GTINs by net content, what is still missing, and a form to add one."""
    return _gtins_page(MultiDict(request.args))


@bp.post("/trace/gtins")
@role_required(*STAFF_ROLES)
def set_gtin():
    """Store a GTIN for a product and net content (validated; refusals shown beside the field)."""
    product = _products().get(request.form.get("product_id", 0, type=int) or 0)
    if product is None:
        refusal = GtinError(N_("choose one of the shop's products"), field="product_id")
        return _gtins_page(request.form, refusal, 400)
    with attempt(flash_error=False) as result:
        row = gtins.set_gtin(
            db_session(),
            product,
            request.form.get("net_content"),
            request.form.get("gtin"),
            company_prefix=settings().gs1_company_prefix,
            user_id=current_user.id,
        )
    if not result.ok:
        error = result.exception
        return _gtins_page(request.form, error if isinstance(error, GtinError) else None, 400)
    _stories_changed()
    flash(_("GTIN %(gtin)s stored for %(product)s.", gtin=row.gtin, product=product.name(_lang())), "success")
    return redirect(url_for("trace.gtins_page"))


@bp.post("/trace/gtins/<int:row_id>/remove")
@role_required(*STAFF_ROLES)
def remove_gtin(row_id: int):
    """Forget one GTIN: new lots of that net content get none; labelled lots keep theirs."""
    row = db_session().get(ProductGtin, row_id) or abort(404)
    with attempt() as result:
        gtins.remove_gtin(db_session(), row, user_id=current_user.id)
    if result.ok:
        flash(_("GTIN removed. Lots already labelled with it keep it."), "success")
    return redirect(url_for("trace.gtins_page"))
