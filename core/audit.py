"""Record changes in the shared audit log. Services call this; they do not commit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import AuditEntry


def record(
    session: Session,
    action: str,
    entity: Any | None = None,
    *,
    entity_type: str | None = None,
    entity_id: Any = None,
    user_id: int | None = None,
    details: dict[str, Any] | None = None,
    note: str | None = None,
) -> AuditEntry:
    """Add an audit entry for ``entity`` (any mapped object with an ``id``)."""
    if entity is not None:
        entity_type = entity_type or entity.__tablename__
        if entity_id is None:
            if getattr(entity, "id", None) is None:
                session.flush()
            entity_id = entity.id
    entry = AuditEntry(
        action=action,
        entity_type=entity_type or "",
        entity_id=str(entity_id if entity_id is not None else ""),
        user_id=user_id,
        details=details,
        note=note,
    )
    session.add(entry)
    return entry


def history(session: Session, entity_type: str, entity_id: Any) -> list[AuditEntry]:
    stmt = (
        select(AuditEntry)
        .where(AuditEntry.entity_type == entity_type, AuditEntry.entity_id == str(entity_id))
        .order_by(AuditEntry.at, AuditEntry.id)
    )
    return list(session.scalars(stmt))
