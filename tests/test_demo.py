"""`flask demo seed` creates a believable village, and every demo user can log in."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from core.models import User
from tests.conftest import login


def test_demo_seed_creates_a_village_once(runner, session, app):
    from coop.models import Household
    from iot.models import Device, Greenhouse
    from shop.models import Product

    result = runner.invoke(args=["demo", "seed", "--password", "demo-password-1"])
    assert result.exit_code == 0, result.output
    assert 28 <= session.scalar(select(func.count(Household.id))) <= 40
    greenhouses = session.scalars(select(Greenhouse)).all()
    assert len(greenhouses) == 6
    crops = " ".join(g.crop or "" for g in greenhouses)
    for crop in ("peach", "grape", "cucumber", "seedling", "mushroom", "melon"):
        assert crop in crops
    assert session.scalar(select(func.count(Device.id))) >= 6
    assert session.scalar(select(func.count(Product.id))) >= 5
    roles = set(session.scalars(select(User.role)))
    assert roles == {"admin", "official", "oversight", "farmer", "customer"}
    # passwords are printed once, for every account
    printed = re.findall(r"^\s+(\w+)\s+(\w+)\s+(\S+)$", result.output, re.M)
    assert {role for role, _u, _p in printed} == roles

    # the services' broker logins are kept in the database, as in production
    broker_users = runner.invoke(args=["iot", "broker", "user", "list"]).output
    assert "tianyuan-ingester" in broker_users and "publisher" in broker_users and "simulator" in broker_users

    again = runner.invoke(args=["demo", "seed", "--if-empty"])
    assert again.exit_code == 0 and "skipped" in again.output
    assert session.scalar(select(func.count(Greenhouse.id))) == 6

    client = app.test_client()
    for role, username, password in printed:
        client.post("/logout")
        assert login(client, username, password).status_code == 302, username
        area = {
            "admin": "/coop/",
            "official": "/coop/",
            "oversight": "/coop/review",
            "farmer": "/iot/",
            "customer": "/shop/orders",
        }[role]
        assert client.get(area).status_code == 200, (username, area)
