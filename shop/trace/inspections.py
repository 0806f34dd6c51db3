"""Inspections of a lot (e.g. a pesticide residue test) and their certificate files.

A lot's inspections hold for every pack and box made from it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.errors import N_
from core.parse import InputError, decimal_number
from core.text import fold_width
from shop.trace.ancestry import ancestry
from shop.trace.errors import LotError
from shop.trace.events import add_event, event_time, plausible_day
from shop.trace.models import INSPECTION_RESULTS, RESULT_UNITS, HarvestLot, Inspection, InspectionResult

CERTIFICATE_TYPES = {".pdf", ".png", ".jpg", ".jpeg", ".webp"}
MAX_RESULTS = 50
FIELDS = ("substance", "cas", "value", "unit", "mrl")  # a measured result's fields, as a form names them
NOT_DETECTED = ("nd", "n.d.", "未检出", "-")
_CAS = re.compile(r"(\d{2,7})-(\d{2})-(\d)")
MAX_RESIDUE = Decimal("99999999")  # what a result column (14 digits, 4 after the point) holds


def valid_cas(cas: str) -> bool:
    """A CAS Registry Number: 2-7 digits, 2 digits, a check digit (the weighted digit sum mod 10)."""
    match = _CAS.fullmatch(cas)
    if not match:
        return False
    digits = (match.group(1) + match.group(2))[::-1]
    return sum((i + 1) * int(d) for i, d in enumerate(digits)) % 10 == int(match.group(3))


@dataclass(frozen=True)
class Measured:
    """One measured substance as read from a form, the CLI or the API (not yet stored)."""

    substance: str
    cas: str | None
    value: Decimal | None  # None: not detected
    unit: str
    mrl: Decimal | None

    @property
    def exceeds(self) -> bool:
        return self.value is not None and self.mrl is not None and self.value > self.mrl


class ResultError(LotError):
    """A measured result could not be read; ``row`` (from 1) and ``field`` say where."""

    def __init__(self, template: str, *, row: int, field: str, **params: object):
        super().__init__(template, row=row, **params)
        self.row = row
        self.field = field


def _amount(raw: object, row: int, field: str) -> Decimal | None:
    try:
        value = decimal_number(raw, hi=MAX_RESIDUE)
    except InputError:
        raise ResultError(
            N_("row %(row)d: %(text)s is not a number"), row=row, field=field, text=str(raw)[:20]
        ) from None
    if value is not None and value < 0:
        raise ResultError(N_("row %(row)d: a measured amount cannot be negative"), row=row, field=field)
    return value


def read_results(rows: Sequence[Mapping[str, object]]) -> list[Measured]:
    """Measured substances from rows of text (``substance``, ``cas``, ``value``, ``unit``,
    ``mrl``); empty rows are skipped. A value left empty or written ND/未检出 is "not detected"."""
    out: list[Measured] = []
    for n, row in enumerate(rows, start=1):
        text = {k: fold_width(str(row.get(k) or "")).strip() for k in FIELDS}
        if not any(text[k] for k in ("substance", "cas", "value", "mrl")):
            continue
        if not text["substance"]:
            raise ResultError(N_("row %(row)d: name the substance"), row=n, field="substance")
        if len(text["substance"]) > 120:
            raise ResultError(N_("row %(row)d: the substance name is too long"), row=n, field="substance")
        cas = text["cas"] or None
        if cas is not None and not valid_cas(cas):
            raise ResultError(
                N_("row %(row)d: %(cas)s is not a CAS number (e.g. 52315-07-8)"),
                row=n,
                field="cas",
                cas=cas[:20],
            )
        unit = text["unit"].replace("µ", "u").replace("μ", "u") or "mg/kg"
        if unit not in RESULT_UNITS:
            raise ResultError(N_("row %(row)d: choose the unit"), row=n, field="unit")
        value = None if text["value"].lower() in (*NOT_DETECTED, "") else _amount(text["value"], n, "value")
        out.append(Measured(text["substance"], cas, value, unit, _amount(text["mrl"], n, "mrl")))
    if len(out) > MAX_RESULTS:
        raise LotError(N_("at most %(n)d measured substances per inspection"), n=MAX_RESULTS)
    return out


def save_certificate(directory: Path, filename: str, data: bytes) -> str:
    """Store an uploaded certificate under ``directory`` with a random name; returns that name."""
    suffix = Path(filename or "").suffix.lower()
    if suffix not in CERTIFICATE_TYPES:
        raise LotError(N_("The certificate must be a PDF or an image."))
    if not data:
        raise LotError(N_("certificate file is empty"))
    directory.mkdir(parents=True, exist_ok=True)
    name = secrets.token_hex(12) + suffix
    (directory / name).write_bytes(data)
    return name


def record_inspection(
    session: Session,
    lot: HarvestLot,
    lab: str | None,
    tested_on: date,
    result: str | None,
    *,
    kind: str = "pesticide_residue",
    summary: str | None = None,
    certificate_file: str | None = None,
    certificate_name: str | None = None,
    results: Sequence[Measured] = (),
    user_id: int | None = None,
) -> Inspection:
    """Record a test of a lot (and so of every pack and box made from it), with the measured
    substances when the report gives numbers. A result above its limit (MRL) cannot pass."""
    lab = (lab or "").strip()
    if not lab:
        raise LotError(N_("lab is required"))
    if result not in INSPECTION_RESULTS:
        raise LotError(N_("result must be pass or fail"))
    plausible_day(tested_on)
    if lot.harvested_on and tested_on < lot.harvested_on - timedelta(days=30):
        raise LotError(N_("test date is long before the harvest"))
    over = [r.substance for r in results if r.exceeds]
    if over and result == "pass":
        raise LotError(
            N_("%(substance)s is above its limit: an inspection with it cannot pass"), substance=over[0]
        )
    inspection = Inspection(
        lot=lot,
        kind=kind,
        lab=lab,
        tested_on=tested_on,
        result=result,
        summary=(summary or "").strip() or None,
        certificate_file=certificate_file,
        certificate_name=certificate_name,
        results=[
            InspectionResult(
                position=i, substance=r.substance, cas=r.cas, value=r.value, unit=r.unit, mrl=r.mrl
            )
            for i, r in enumerate(results)
        ],
    )
    session.add(inspection)
    session.flush()
    add_event(
        session,
        lot,
        "inspected",
        at=event_time(tested_on),
        user_id=user_id,
        details={"inspection_id": inspection.id, "result": result, "lab": lab},
    )
    audit.record(
        session,
        "lot.inspect",
        lot,
        user_id=user_id,
        details={"result": result, "lab": lab, "measured": len(results)},
    )
    return inspection


def inspections_for(session: Session, lot: HarvestLot) -> list[Inspection]:
    """Inspections of the lot and of every lot it was made from."""
    ids = [lot.id] + [r.lot.id for r in ancestry(session, lot)]
    return list(
        session.scalars(
            select(Inspection).where(Inspection.lot_id.in_(ids)).order_by(Inspection.tested_on, Inspection.id)
        )
    )
