"""The producer's identity: what certificates, labels and trace pages say about who answers
for the produce (shop.trace.producer)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.models import AuditEntry
from shop.trace import producer
from shop.trace.producer import ProducerError, valid_credit_code


@pytest.mark.parametrize(
    "code, ok",
    [
        ("91350100M000100Y43", True),  # published examples of real codes
        ("91110108551385082Q", True),
        ("91350100M000100Y44", False),  # wrong check character
        ("91350100M000100Y4", False),  # 17 characters
        ("91350100M000100O43", False),  # O is not in the alphabet
    ],
)
def test_credit_code_check_character(code, ok):
    assert valid_credit_code(code) is ok


def test_update_cleans_validates_and_audits(session, make_user):
    official = make_user("official1", "official")
    farmer = make_user("farmer1", "farmer")
    with pytest.raises(ProducerError):
        producer.update(session, user_id=farmer.id, name="x")
    with pytest.raises(ProducerError) as bad:
        producer.update(session, user_id=official.id, credit_code="91350100M000100Y44")
    assert bad.value.params["field"] == "credit_code"
    row = producer.update(
        session,
        user_id=official.id,
        name="  赵庄村  合作社 ",
        credit_code="９１３５０１００m０００１００y４３",  # full width, lower case: as typed on a phone
        province="河南省",
        county="登封市",
        village="赵庄村",
    )
    session.commit()
    assert row.name == "赵庄村 合作社" and row.credit_code == "91350100M000100Y43"
    assert producer.origin(producer.get(session)) == "河南省登封市赵庄村"
    log = session.scalar(select(AuditEntry).where(AuditEntry.action == "shop.trace.producer"))
    assert log is not None and log.details["credit_code"] == ["", "91350100M000100Y43"]


def test_unset_producer_is_empty_not_missing(session):
    row = producer.get(session)
    assert row.name == "" and producer.origin(row) == ""
