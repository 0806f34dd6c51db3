"""The staff cycle page with its production record (生产记录): inputs (fertilisers,
pesticides with their registration number and pre-harvest interval) and pest control
records, each form with its messages beside the fields.

URL map (on the trace blueprint ``bp``)
  /trace/cycles/<id>                         the cycle: lots, production record, conditions
  /trace/cycles/<id>/inputs                  record an input (fertiliser, pesticide, other)
  /trace/cycles/<id>/pest-controls           record a pest or disease and its control
"""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from core import clock, parse
from core.web import attempt, db_session, role_required
from shop.trace import access as trace_access
from shop.trace import production
from shop.trace.blueprint import bp, stories_changed
from shop.trace.conditions import growing_conditions
from shop.trace.errors import LotError
from shop.trace.models import CropCycle
from shop.trace.production_forms import PestControlForm, ProductionInputForm

__all__ = ["bp"]
FARM_ROLES = ("admin", "official", "farmer")
STAFF_ROLES = ("admin", "official")


def _cycle_or_404(cycle_id: int) -> CropCycle:
    cycle = db_session().get(CropCycle, cycle_id)
    if cycle is None or not trace_access.can_manage_cycle(current_user, cycle):
        abort(404)
    return cycle


def _uid() -> int | None:
    return current_user.id if current_user.is_authenticated else None


def _day(raw: Any, field_name: str) -> date:
    """A date typed into ``field_name`` (refusals name the field)."""
    try:
        return parse.date_field(raw)
    except parse.InputError as exc:
        error = LotError(exc.template, **exc.params)
        error.field = field_name
        raise error from exc


def _optional_day(raw: Any, field_name: str) -> date | None:
    try:
        return parse.optional_date(raw)
    except parse.InputError as exc:
        error = LotError(exc.template, **exc.params)
        error.field = field_name
        raise error from exc


def _pesticide_choices(cycle: CropCycle) -> list[tuple[int, str]]:
    return [(0, "—")] + [
        (u.id, f"{u.applied_on} · {u.product}") for u in cycle.inputs if u.kind == "pesticide"
    ]


def _page(
    cycle: CropCycle,
    input_form: ProductionInputForm | None = None,
    pest_form: PestControlForm | None = None,
    status: int = 200,
):
    session = db_session()
    today = clock.today()
    if input_form is None:
        input_form = ProductionInputForm(formdata=None)
        input_form.applied_on.data = today.isoformat()
    if pest_form is None:
        pest_form = PestControlForm(formdata=None)
        pest_form.observed_on.data = today.isoformat()
    pest_form.input_use_id.choices = _pesticide_choices(cycle)
    conditions = growing_conditions(session, cycle, min(today, cycle.ended_on or today))
    record = production.production_record(session, cycle)
    next_day = production.harvest_problem(session, cycle, today)
    return (
        render_template(
            "trace/cycle.html",
            cycle=cycle,
            conditions=conditions,
            record=record,
            input_form=input_form,
            pest_form=pest_form,
            interval_today=next_day.translated(_) if next_day is not None else None,
            official=current_user.role in STAFF_ROLES,
        ),
        status,
    )


def _beside(form: Any, result: attempt) -> None:
    """Put a refusal beside the field it is about (else at the top of the page)."""
    name = getattr(result.exception, "field", None)
    target = getattr(form, name, None) if name else None
    if target is not None:
        target.errors = [*list(target.errors or []), result.error or ""]
    else:
        flash(result.error or "", "error")


@bp.get("/trace/cycles/<int:cycle_id>")
@role_required(*FARM_ROLES)
def cycle(cycle_id: int):
    """A crop cycle: its lots, its production record and its growing conditions so far."""
    return _page(_cycle_or_404(cycle_id))


@bp.post("/trace/cycles/<int:cycle_id>/inputs")
@role_required(*FARM_ROLES)
def add_input(cycle_id: int):
    """Record an input: a fertiliser, a pesticide (with its registration number and
    pre-harvest interval) or another input."""
    cycle = _cycle_or_404(cycle_id)
    form = ProductionInputForm()
    if not form.validate_on_submit():
        return _page(cycle, input_form=form, status=400)
    with attempt(flash_error=False) as result:
        production.record_input(
            db_session(),
            cycle,
            kind=form.kind.data,
            product=form.product.data,
            amount=form.amount.data,
            unit=form.unit.data,
            applied_on=_day(form.applied_on.data, "applied_on"),
            pesticide_class=form.pesticide_class.data,
            registration_no=form.registration_no.data,
            supplier=form.supplier.data,
            purchased_on=_optional_day(form.purchased_on.data, "purchased_on"),
            purchase_ref=form.purchase_ref.data,
            method=form.method.data,
            rate=form.rate.data,
            rate_unit=form.rate_unit.data,
            target=form.target.data,
            interval_days=form.interval_days.data,
            note=form.note.data,
            user_id=_uid(),
            override_reason=form.override_reason.data,
        )
    if not result.ok:
        _beside(form, result)
        return _page(cycle, input_form=form, status=400)
    stories_changed()
    flash(_("Input recorded."), "success")
    return redirect(url_for("trace.cycle", cycle_id=cycle.id) + "#production")


@bp.post("/trace/cycles/<int:cycle_id>/pest-controls")
@role_required(*FARM_ROLES)
def add_pest_control(cycle_id: int):
    """Record a pest or disease seen on the cycle and what was done about it."""
    cycle = _cycle_or_404(cycle_id)
    form = PestControlForm()
    form.input_use_id.choices = _pesticide_choices(cycle)
    if not form.validate_on_submit():
        return _page(cycle, pest_form=form, status=400)
    with attempt(flash_error=False) as result:
        production.record_pest_control(
            db_session(),
            cycle,
            observed_on=_day(form.observed_on.data, "observed_on"),
            observation=form.observation.data,
            control=form.control.data,
            measure=form.measure.data,
            input_use_id=form.input_use_id.data or None,
            user_id=_uid(),
        )
    if not result.ok:
        _beside(form, result)
        return _page(cycle, pest_form=form, status=400)
    stories_changed()
    flash(_("Pest control recorded."), "success")
    return redirect(url_for("trace.cycle", cycle_id=cycle.id) + "#pest-control")
