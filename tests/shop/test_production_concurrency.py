"""A pesticide and a harvest inside its interval recorded at the same moment, in two
transactions: the one that comes second sees the first and is refused (SQLite and
PostgreSQL: the rule locks the cycle before it reads)."""

from __future__ import annotations

import threading
import time
from datetime import date

import pytest
from sqlalchemy import select

from core.db import make_session_factory
from shop.trace import lots, production
from shop.trace.models import CropCycle, HarvestLot, InputUse
from tests.shop.test_production import PLANTED, spray
from tests.shop.trace_factories import make_farm


@pytest.fixture(autouse=True)
def _frozen():  # as in test_production: today is 2026-04-20
    from core import clock

    with clock.frozen(clock.at_local(date(2026, 4, 20), 10)):
        yield


@pytest.mark.parametrize("first", ["pesticide", "harvest"])
def test_a_pesticide_and_a_harvest_at_the_same_moment(engine, session, first):
    farm = make_farm(session, planted_on=PLANTED)
    cycle_id = farm.cycle.id
    factory = make_session_factory(engine)
    started, outcome = threading.Event(), {}

    def pesticide() -> None:
        with factory() as s:
            try:
                spray(s, s.get(CropCycle, cycle_id))
                if first == "pesticide":
                    started.set()
                    time.sleep(0.6)  # hold the transaction while the other one tries
                s.commit()
                outcome["pesticide"] = "ok"
            except production.IntervalError:
                s.rollback()
                outcome["pesticide"] = "refused"

    def harvest() -> None:
        with factory() as s:
            try:
                lots.create_harvest_lot(
                    s, s.get(CropCycle, cycle_id), "30", "kg", harvested_on=date(2026, 3, 12)
                )
                if first == "harvest":
                    started.set()
                    time.sleep(0.6)
                s.commit()
                outcome["harvest"] = "ok"
            except production.IntervalError:
                s.rollback()
                outcome["harvest"] = "refused"

    one, other = (pesticide, harvest) if first == "pesticide" else (harvest, pesticide)
    a = threading.Thread(target=one)
    a.start()
    assert started.wait(10)
    b = threading.Thread(target=other)
    b.start()
    a.join(30)
    b.join(30)
    second = "harvest" if first == "pesticide" else "pesticide"
    assert outcome == {first: "ok", second: "refused"}
    session.expire_all()
    assert len(session.scalars(select(InputUse)).all()) == (1 if first == "pesticide" else 0)
    assert len(session.scalars(select(HarvestLot)).all()) == (0 if first == "pesticide" else 1)
