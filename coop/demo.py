"""Demo data for the village books."""

from __future__ import annotations

import random
from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from coop.models import Household

SURNAMES = "赵赵赵赵赵王王王李李李张张刘刘陈杨黄周吴徐孙马朱胡郭何高林罗郑"
GIVEN = ["建国", "秀英", "桂兰", "志强", "海燕", "国庆", "玉梅", "红军", "春生", "小平", "金凤", "德明",
         "淑珍", "永福", "长青", "翠花", "振华", "丽娟", "保国", "文杰", "月娥", "新民", "凤英", "卫东",
         "秋菊", "铁柱", "巧云", "家兴", "素芬", "明亮"]


def seed_members(session: Session, ctx: dict[str, Any]) -> None:
    """About 30 member households of Zhaozhuang village."""
    rng = random.Random(20241124)
    households = []
    for i in range(30):
        h = Household(
            code=f"ZZ{i + 1:03d}",
            head_name=SURNAMES[i] + GIVEN[i],
            members=rng.randint(2, 6),
            phone=f"1{rng.randint(30, 99)}{rng.randint(10000000, 99999999)}",
            address=f"赵庄村{rng.randint(1, 4)}组{rng.randint(1, 60)}号",
            joined_on=date(2019, 6, 1),
        )
        session.add(h)
        households.append(h)
    session.flush()
    ctx["households"] = households
