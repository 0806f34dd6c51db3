"""Core's part of the demo village: its users (the app runs every area's demo phase, in
order, from ``app.seed_demo``)."""

from __future__ import annotations

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
