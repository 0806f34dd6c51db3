"""The database glue: a savepoint taken after only reading stays inside its transaction."""

from __future__ import annotations

from core.models import AuditEntry


def test_a_savepoint_after_reads_is_rolled_back_with_its_transaction(session):
    session.get(AuditEntry, 1)  # only reads so far
    with session.begin_nested():
        session.add(AuditEntry(action="x", entity_type="t", entity_id="1"))
    session.rollback()  # the caller changes its mind: the savepoint's row goes too
    assert session.get(AuditEntry, 1) is None
    assert session.query(AuditEntry).count() == 0
