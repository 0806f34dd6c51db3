"""Inspections of a lot (e.g. a pesticide residue test) and their certificate files.

A lot's inspections hold for every pack and box made from it.
"""

from __future__ import annotations

import secrets
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.errors import N_
from shop.trace.ancestry import ancestry
from shop.trace.errors import LotError
from shop.trace.events import add_event, event_time, plausible_day
from shop.trace.models import INSPECTION_RESULTS, HarvestLot, Inspection

CERTIFICATE_TYPES = {".pdf", ".png", ".jpg", ".jpeg", ".webp"}


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
    user_id: int | None = None,
) -> Inspection:
    """Record a test of a lot (and so of every pack and box made from it)."""
    lab = (lab or "").strip()
    if not lab:
        raise LotError(N_("lab is required"))
    if result not in INSPECTION_RESULTS:
        raise LotError(N_("result must be pass or fail"))
    plausible_day(tested_on)
    if lot.harvested_on and tested_on < lot.harvested_on - timedelta(days=30):
        raise LotError(N_("test date is long before the harvest"))
    inspection = Inspection(
        lot=lot,
        kind=kind,
        lab=lab,
        tested_on=tested_on,
        result=result,
        summary=(summary or "").strip() or None,
        certificate_file=certificate_file,
        certificate_name=certificate_name,
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
    audit.record(session, "lot.inspect", lot, user_id=user_id, details={"result": result, "lab": lab})
    return inspection


def inspections_for(session: Session, lot: HarvestLot) -> list[Inspection]:
    """Inspections of the lot and of every lot it was made from."""
    ids = [lot.id] + [r.lot.id for r in ancestry(session, lot)]
    return list(
        session.scalars(
            select(Inspection).where(Inspection.lot_id.in_(ids)).order_by(Inspection.tested_on, Inspection.id)
        )
    )
