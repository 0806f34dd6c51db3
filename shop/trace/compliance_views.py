"""Pages of the 承诺达标合格证 (``shop.trace.compliance``) and of the producer's identity.

URL map (on the trace blueprint ``bp``)
  /trace/lots/<id>/certificates        issue a certificate for a lot (form; POST issues)
  /trace/certificates                  the issue register: search, CSV and XLSX (staff)
  /trace/certificates/<id>             the printable certificate (?size=a4 | label)
  /trace/producer                      the producer's identity (staff)
The lot's public trace page lists its certificates (``compliance_certificates`` global).
"""

from __future__ import annotations

import csv
import io
from typing import Any

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask.blueprints import BlueprintSetupState
from flask_babel import gettext as _
from flask_login import current_user
from markupsafe import Markup

from core import parse
from core.text import safe_cell
from core.web import attempt, db_session, role_required, settings
from shop.trace import access as trace_access
from shop.trace import compliance, labels, lots, qr
from shop.trace import producer as producers
from shop.trace.inspections import inspections_for
from shop.trace.models import ComplianceCertificate, HarvestLot

FARM_ROLES = ("admin", "official", "farmer")
STAFF_ROLES = ("admin", "official")

REGISTER_ROLES = STAFF_ROLES  # there is no inspector role (core.models.ROLES); officials read it
SIZES = {  # the printable page: A4, or 100 × 70 mm 合格证 label stock (landscape)
    "a4": "A4",
    "label": "100mm 70mm",
}


def register(bp: Blueprint) -> None:
    """Add these pages to the trace blueprint (``app.create_app`` calls it before registering
    ``bp``; this module does not import ``shop.trace.views``, so only the app imports views)."""
    if getattr(bp, "_compliance_pages", False):  # the blueprint is module-wide: once per process
        return
    bp._compliance_pages = True  # type: ignore[attr-defined]
    bp.record_once(_setup_compliance)
    bp.add_url_rule(
        "/trace/lots/<int:lot_id>/certificates", "issue_certificate", issue, methods=["GET", "POST"]
    )
    bp.add_url_rule("/trace/certificates", "certificate_register", certificate_register)
    bp.add_url_rule("/trace/certificates/<int:cert_id>", "certificate_page", certificate_page)
    bp.add_url_rule("/trace/producer", "producer_settings", producer_settings, methods=["GET", "POST"])


def _setup_compliance(state: BlueprintSetupState) -> None:
    state.app.jinja_env.globals["compliance_certificates"] = _public_certificates
    state.app.jinja_env.globals["compliance_issue_context"] = issue_context
    state.app.jinja_env.globals["certificate_withdrawn"] = _withdrawn_because


def _withdrawn_because(cert: ComplianceCertificate) -> str | None:
    """For the templates: ``compliance.withdrawn_because`` (recalled, interval, or None)."""
    return compliance.withdrawn_because(db_session(), cert)


def _stories_changed() -> None:
    """A certificate changes the public page: forget the cached stories (``views.story_cache``)."""
    cache = current_app.extensions.get("trace_cache")
    if cache is not None:
        cache.clear()


def _public_certificates(code: str) -> list[ComplianceCertificate]:
    """The certificates of the lot with trace code ``code`` (public.html's include)."""
    lot = lots.lot_by_code(db_session(), code)
    return compliance.for_lot(db_session(), lot) if lot is not None else []


def _trace_url(lot: HarvestLot) -> str:
    return compliance.trace_url(lot, settings().public_base_url)


def _lot_or_404(lot_id: int) -> HarvestLot:
    lot = db_session().get(HarvestLot, lot_id)
    if lot is None or not trace_access.can_manage_lot(current_user, lot):
        abort(404)
    return lot


def issue_context(lot: HarvestLot) -> dict[str, Any]:
    """What the issue form shows: the bases offered, the units, who would issue."""
    session = db_session()
    return {
        "bases": compliance.bases_for(inspections_for(session, lot)),
        "basis_labels": compliance.BASIS_LABELS,
        "units": compliance.units_for(lot),
        "issuer": compliance.issuer_of(current_user, lot),
        "certificates": compliance.for_lot(session, lot),
    }


@role_required(*FARM_ROLES)
def issue(lot_id: int) -> Any:
    """Issue a 承诺达标合格证 for a lot: quantity, unit and basis; messages beside the fields."""
    lot = _lot_or_404(lot_id)
    values = {"quantity": "", "unit": lot.unit, "basis": ""}
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        values = {key: (request.form.get(key) or "").strip() for key in values}
        with attempt(flash_error=False) as result:
            cert = compliance.issue_certificate(
                db_session(),
                lot,
                quantity=values["quantity"] or None,
                unit=values["unit"] or None,
                basis=values["basis"],
                user_id=current_user.id,
                trace_url=_trace_url(lot),
            )
        if result.ok:
            _stories_changed()
            flash(_("Certificate %(serial)s issued. Print it now.", serial=cert.serial), "success")
            return redirect(url_for("trace.certificate_page", cert_id=cert.id))
        exc = result.exception
        field = getattr(exc, "field", None)  # a refusal about another form (the harvest's) goes on top
        errors[field if field in values else "form"] = result.error or ""
        status = 400
    context = issue_context(lot)
    if not values["basis"] and context["bases"]:
        values["basis"] = context["bases"][0]
    return (
        render_template("trace/compliance/issue.html", lot=lot, values=values, errors=errors, **context),
        status,
    )


def _may_see(cert: ComplianceCertificate) -> bool:
    return current_user.role in REGISTER_ROLES or trace_access.can_manage_lot(current_user, cert.lot)


@role_required(*FARM_ROLES)
def certificate_page(cert_id: int) -> Any:
    """The printable certificate, in Chinese: ``?size=a4`` (default) or ``label`` (100 × 70 mm)."""
    cert = db_session().get(ComplianceCertificate, cert_id)
    if cert is None or not _may_see(cert):
        abort(404)
    size = request.args.get("size", "a4")
    if size not in SIZES:
        size = "a4"
    snap = cert.snapshot
    return render_template(
        "trace/compliance/certificate.html",
        cert=cert,
        snap=snap,
        size=size,
        page_size=SIZES[size],
        basis_labels=compliance.BASIS_LABELS,
        qr=Markup(qr.qr_svg(snap.get("trace_url", ""), scale=4, inline=True)),
        # its QR was frozen when it was issued: one on a loopback address opens nothing (review)
        url_problem=labels.public_url_problem(snap.get("trace_url", "")),
    )


def _register_query() -> tuple[dict[str, str], dict[str, Any], str | None]:
    fields = {
        key: (request.args.get(key) or "").strip()[:60]
        for key in ("serial", "lot", "product", "start", "end")
    }
    error = None
    try:
        start = parse.date_field(fields["start"], default=None) if fields["start"] else None
        end = parse.date_field(fields["end"], default=None) if fields["end"] else None
    except parse.InputError as exc:
        start = end = None
        error = exc.translated(_)
    query = {
        "serial": fields["serial"],
        "lot_number": fields["lot"],
        "product": fields["product"],
        "start": start,
        "end": end,
    }
    return fields, query, error


@role_required(*REGISTER_ROLES)
def certificate_register() -> Any:
    """The issue register: who issued what, when, for which lot and quantity; CSV and XLSX."""
    fields, query, error = _register_query()
    fmt = request.args.get("format", "")
    found = compliance.register(db_session(), **query, limit=None if fmt in ("csv", "xlsx") else 500)
    if fmt == "csv":
        return _csv(found)
    if fmt == "xlsx":
        return _xlsx(found)
    args: dict[str, Any] = {k: v for k, v in fields.items() if v}
    return render_template(
        "trace/compliance/register.html",
        certificates=found,
        fields=fields,
        error=error,
        basis_labels=compliance.BASIS_LABELS,
        csv_url=url_for("trace.certificate_register", format="csv", **args),
        xlsx_url=url_for("trace.certificate_register", format="xlsx", **args),
    ), (400 if error else 200)


def _cells(found: list[ComplianceCertificate]) -> list[list[Any]]:
    rows = [list(compliance.REGISTER_HEADINGS)] + compliance.register_rows(db_session(), found)
    return [[safe_cell(cell) for cell in row] for row in rows]


def _csv(found: list[ComplianceCertificate]) -> Response:
    buf = io.StringIO()
    csv.writer(buf).writerows(_cells(found))
    response = Response("\ufeff" + buf.getvalue(), mimetype="text/csv; charset=utf-8")
    response.headers["Content-Disposition"] = 'attachment; filename="certificates.csv"'
    return response


def _xlsx(found: list[ComplianceCertificate]) -> Response:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "合格证开具记录"
    for row in _cells(found):
        sheet.append(row)
    buf = io.BytesIO()
    book.save(buf)
    response = Response(
        buf.getvalue(), mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    response.headers["Content-Disposition"] = 'attachment; filename="certificates.xlsx"'
    return response


@role_required(*STAFF_ROLES)
def producer_settings() -> Any:
    """The producer's identity on certificates, labels and trace pages; messages beside fields."""
    session = db_session()
    row = producers.get(session)
    values = {key: getattr(row, key) or "" for key in producers.FIELDS}
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        values = {key: request.form.get(key, "") for key in producers.FIELDS}
        errors = {key: exc.translated(_) for key, exc in producers.problems(**values).items()}
        if not errors:
            with attempt(flash_error=False) as result:
                producers.update(session, user_id=current_user.id, **values)
            if result.ok:
                _stories_changed()
                flash(_("The producer's details are saved."), "success")
                return redirect(url_for("trace.producer_settings"))
            errors[getattr(result.exception, "params", {}).get("field") or "form"] = result.error or ""
        status = 400
    return (
        render_template(
            "trace/compliance/producer.html", values=values, errors=errors, origin=producers.origin(row)
        ),
        status,
    )
