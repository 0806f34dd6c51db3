"""Seed a believable demo village, Zhaozhuang (赵庄), by calling each domain's demo module.

Order matters: member households first (coop), then users linked to them, then
greenhouses and sensors (iot), products and lots (shop), then the books (coop).
"""

from __future__ import annotations

import importlib
import secrets
from typing import Any

from sqlalchemy.orm import Session

from core import auth

DEMO_USERS = [
    # username, role, display name, household index (farmers)
    ("admin", "admin", "系统管理员", None),
    ("kuaiji", "official", "赵会计", None),
    ("cunzhang", "official", "赵村长", None),
    ("zhaolin", "farmer", "赵林", 0),
    ("wangfang", "farmer", "王芳", 1),
    ("liqiang", "farmer", "李强", 2),
    ("customer", "customer", "陈女士", None),
]

# (module, function) run in order; each takes (session, ctx) and may add to ctx.
PHASES = [
    ("coop.demo", "seed_members"),
    ("core.demo", "seed_users"),
    ("iot.demo", "seed"),
    ("iot.demo", "seed_history"),
    ("shop.demo", "seed"),
    ("shop.trace_demo", "seed_demo"),
    ("coop.demo", "seed_books"),
]


def seed_users(session: Session, ctx: dict[str, Any]) -> None:
    households = ctx.get("households", [])
    ctx.setdefault("users", {})
    for username, role, name, household_index in DEMO_USERS:
        password = ctx["password"] or secrets.token_urlsafe(9)
        household_id = None
        if household_index is not None and household_index < len(households):
            household_id = households[household_index].id
        user = auth.create_user(
            session, username, password, role, display_name=name, household_id=household_id
        )
        ctx["users"][username] = user
        ctx["accounts"].append((username, role, password))


def seed_all(session: Session, password: str | None = None) -> list[tuple[str, str, str]]:
    """Create the demo village; returns (username, role, password) for each demo user."""
    ctx: dict[str, Any] = {"password": password, "accounts": []}
    for module_name, func_name in PHASES:
        module = importlib.import_module(module_name)
        func = getattr(module, func_name, None)
        if func is not None:
            func(session, ctx)
            session.flush()
    return ctx["accounts"]
