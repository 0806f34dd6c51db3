"""Demo data for the village books."""

from __future__ import annotations

import random
from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from coop.models import Account, Household
from core import clock

SURNAMES = "赵赵赵赵赵王王王李李李张张刘刘陈杨黄周吴徐孙马朱胡郭何高林罗郑"
GIVEN = [
    "建国",
    "秀英",
    "桂兰",
    "志强",
    "海燕",
    "国庆",
    "玉梅",
    "红军",
    "春生",
    "小平",
    "金凤",
    "德明",
    "淑珍",
    "永福",
    "长青",
    "翠花",
    "振华",
    "丽娟",
    "保国",
    "文杰",
    "月娥",
    "新民",
    "凤英",
    "卫东",
    "秋菊",
    "铁柱",
    "巧云",
    "家兴",
    "素芬",
    "明亮",
]


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


# ---------------------------------------------------------------- the books

ENTERPRISES = [
    # slug, name, kind
    ("grain-mill", "粮食加工厂", "enterprise"),
    ("sales-centre", "农产品销售中心", "enterprise"),
    ("mugwort", "艾草种植专业合作社", "cooperative"),
    ("land-contract", "土地发包", "contract"),
    ("fish-pond", "鱼塘租赁", "contract"),
    ("workshop-lease", "厂房出租", "contract"),
]


def _month_events(rng: random.Random, year: int, month: int, acc: dict[str, str]) -> list[tuple]:
    """(date, summary, lines, attachments) for one month of Zhaozhuang's books."""
    from coop.ledger import Line

    ev = []

    def add(day, summary, lines, attachments=1):
        ev.append((date(year, month, day), summary, lines, attachments))

    mill = rng.randrange(800_000, 1_600_000, 100)
    add(
        rng.randint(26, 28),
        f"粮食加工厂{month}月加工费收入",
        [Line("101", debit=mill), Line(acc["mill"], credit=mill)],
        3,
    )
    power = rng.randrange(150_000, 320_000, 100)
    add(
        rng.randint(10, 15),
        f"粮食加工厂{month}月电费",
        [Line(acc["mill_exp"], debit=power), Line("102", credit=power)],
        1,
    )
    wages = 420_000
    add(
        25, f"粮食加工厂{month}月工人工资", [Line(acc["mill_exp"], debit=wages), Line("102", credit=wages)], 2
    )
    deposit = mill - 150_000
    add(28, "现金存入银行", [Line("102", debit=deposit), Line("101", credit=deposit)], 1)
    add(
        5, f"村干部{month}月误工补贴", [Line(acc["allowance"], debit=600_000), Line("102", credit=600_000)], 2
    )
    office = rng.randrange(20_000, 90_000, 100)
    add(
        rng.randint(6, 20), "购买办公用品", [Line(acc["office"], debit=office), Line("101", credit=office)], 1
    )
    sales = rng.randrange(1_200_000, 2_800_000, 100)
    cost = sales * 72 // 100
    add(
        rng.randint(16, 22),
        f"农产品销售中心{month}月销售收入",
        [Line("102", debit=sales), Line(acc["sales"], credit=sales)],
        4,
    )
    add(
        rng.randint(16, 22),
        f"农产品销售中心{month}月采购及包装",
        [Line(acc["sales_exp"], debit=cost), Line("102", credit=cost)],
        3,
    )
    if month in (5, 6, 7, 8, 9):
        mug = rng.randrange(1_500_000, 3_500_000, 100)
        add(
            rng.randint(12, 20),
            f"艾草合作社{month}月艾草及艾条销售",
            [Line("102", debit=mug), Line(acc["mugwort"], credit=mug)],
            4,
        )
        mug_cost = mug * 55 // 100
        add(
            rng.randint(21, 24),
            f"艾草合作社{month}月收购社员艾草",
            [Line(acc["mugwort_exp"], debit=mug_cost), Line("102", credit=mug_cost)],
            6,
        )
    if month == 3:
        add(
            18,
            "村级组织运转经费补助",
            [Line("102", debit=6_000_000), Line(acc["subsidy_ops"], credit=6_000_000)],
            2,
        )
    if month == 6:
        add(
            9,
            "高标准农田建设管护补助",
            [Line("102", debit=3_000_000), Line(acc["subsidy_farm"], credit=3_000_000)],
            3,
        )
        add(
            20,
            "村道维修（一事一议）",
            [Line(acc["roads"], debit=1_800_000), Line("102", credit=1_800_000)],
            5,
        )
    if month == 9:
        add(12, "更换村内太阳能路灯", [Line(acc["lights"], debit=520_000), Line("102", credit=520_000)], 3)
    if month == 11:
        add(8, "银行存款利息", [Line("102", debit=86_500), Line(acc["interest"], credit=86_500)], 1)
    if month == 12:
        add(20, "重阳节慰问老人", [Line(acc["welfare"], debit=360_000), Line("101", credit=360_000)], 2)
    return sorted(ev, key=lambda e: e[0])


def seed_books(session: Session, ctx: dict[str, Any]) -> None:
    """A year and a bit of Zhaozhuang's books: last year closed with a distribution and a
    published disclosure, this year up to last month, shares for every household."""
    from sqlalchemy import select

    from coop import disclosure, distribution, members, settings, statements
    from coop.ledger import Line, ensure_account, load_chart, post_voucher, reverse_voucher
    from coop.models import Household, RecurringEntry, ShareEvent

    load_chart(session, opening=date(clock.today().year - 1, 1, 1))
    settings.update(
        session, name="赵庄村股份经济合作社", contact="村会计室 0371-6288 0000（工作日 8:30–17:30）"
    )
    users = ctx.get("users", {})
    preparer = users["kuaiji"].id if "kuaiji" in users else None
    approver = users["cunzhang"].id if "cunzhang" in users else None
    households = ctx.get("households") or list(session.scalars(select(Household).order_by(Household.code)))
    if not households or session.scalar(select(ShareEvent.id).limit(1)) is not None:
        return
    today = clock.today()
    year = today.year - 1
    rng = random.Random(20241125)

    # share register: 10 shares per household member (人口股), plus one transfer
    for h in households:
        members.issue_shares(
            session, h.id, 10 * h.members, on=date(2019, 6, 1), note="股份合作制改革 人口股", user_id=preparer
        )
    if len(households) > 3:
        members.transfer_shares(
            session,
            households[2].id,
            households[3].id,
            5,
            on=date(year, 4, 2),
            note="户内分户 转让",
            user_id=preparer,
        )

    ents = {
        slug: members.add_enterprise(session, slug, name, kind=kind, user_id=preparer)
        for slug, name, kind in ENTERPRISES
    }
    acc = {
        "mill": _code(ents["grain-mill"].income_account),
        "mill_exp": _code(ents["grain-mill"].expense_account),
        "sales": _code(ents["sales-centre"].income_account),
        "sales_exp": _code(ents["sales-centre"].expense_account),
        "mugwort": _code(ents["mugwort"].income_account),
        "mugwort_exp": _code(ents["mugwort"].expense_account),
        "subsidy_ops": ensure_account(session, "503", "村级组织运转经费", key="subsidy:operations").code,
        "subsidy_farm": ensure_account(session, "503", "高标准农田管护补助", key="subsidy:farmland").code,
        "interest": ensure_account(session, "504", "利息收入", key="other-income:interest").code,
        "allowance": ensure_account(session, "513", "村干部误工补贴", key="admin:allowance").code,
        "office": ensure_account(session, "513", "办公费", key="admin:office").code,
        "roads": ensure_account(session, "514", "道路维修", key="welfare:roads").code,
        "lights": ensure_account(session, "514", "路灯", key="welfare:lights").code,
        "welfare": ensure_account(session, "514", "敬老慰问", key="welfare:elderly").code,
    }
    # cooperative member accounts: a dozen households grow mugwort
    for i, h in enumerate(households[:12]):
        members.set_member_account(session, ents["mugwort"].id, h.id, capital=(2 + i % 3) * 100_000)
        members.record_volume(session, ents["mugwort"].id, h.id, year, rng.randrange(300_000, 2_500_000, 100))
    # recurring contract income
    session.add_all(
        [
            RecurringEntry(
                name="土地发包承包费",
                debit_account_id=_id(session, "102"),
                credit_account_id=ents["land-contract"].income_account_id,
                amount=4_800_000,
                every_months=12,
                day=15,
                start=date(year, 1, 15),
                enterprise_id=ents["land-contract"].id,
            ),
            RecurringEntry(
                name="鱼塘租金",
                debit_account_id=_id(session, "102"),
                credit_account_id=ents["fish-pond"].income_account_id,
                amount=300_000,
                every_months=3,
                day=10,
                start=date(year, 1, 10),
                enterprise_id=ents["fish-pond"].id,
            ),
            RecurringEntry(
                name="厂房租金",
                debit_account_id=_id(session, "102"),
                credit_account_id=ents["workshop-lease"].income_account_id,
                amount=250_000,
                every_months=1,
                day=1,
                start=date(year, 1, 1),
                enterprise_id=ents["workshop-lease"].id,
            ),
        ]
    )
    session.flush()

    def post_month(y: int, m: int) -> None:
        from coop.recurring import run_recurring
        from coop.reports import month_end

        run_recurring(session, month_end(y, m), user_id=preparer)
        for day, summary, lines, attachments in _month_events(rng, y, m, acc):
            post_voucher(
                session,
                date=day,
                summary=summary,
                lines=lines,
                preparer_id=preparer,
                approver_id=approver,
                attachments=attachments,
            )

    post_voucher(
        session,
        date=date(year, 1, 2),
        summary="上年结转 库存现金及银行存款",
        preparer_id=preparer,
        approver_id=approver,
        lines=[Line("101", debit=420_000), Line("102", debit=18_500_000), Line("301", credit=18_920_000)],
    )
    for m in range(1, 13):
        post_month(year, m)
        if m == 4:  # a mistake and its correction
            wrong = post_voucher(
                session,
                date=date(year, 4, 16),
                summary="购买办公用品（金额录错）",
                lines=[Line(acc["office"], debit=98_000), Line("101", credit=98_000)],
                preparer_id=preparer,
                attachments=1,
            )
            if preparer is not None and approver is not None:  # prepared, then reviewed and posted
                from coop import review

                undo = review.prepare_reversal(
                    session, wrong.id, date=date(year, 4, 17), preparer_id=preparer
                )
                review.review_and_post(session, undo.id, reviewer_id=approver)
            else:
                reverse_voucher(session, wrong.id, date=date(year, 4, 17), preparer_id=preparer)
    distribution.post_distribution(
        session,
        year,
        payout_percent=60,
        outside_investors=500_000,  # the county supply co-op's stake in the sales centre
        user_id=preparer,
        approver_id=approver,
    )
    statements.save_note(
        session,
        year,
        f"{year}年村道维修（一事一议）已完工并经村民代表会议验收。"
        "粮食加工厂设备由村集体统一管护，本年未发生重大损失。"
        "本年成员分配按章程以人口股为准，未分配部分留待以后年度分配。",
        user_id=preparer,
    )
    # drafted by the accountant, signed off by the 民主理财小组, approved by the village head
    published = disclosure.draft(session, year, "quarter", 4, user_id=preparer)
    if "licai" in users and approver is not None:
        disclosure.sign_off(session, published.id, user_id=users["licai"].id)
        disclosure.approve(session, published.id, user_id=approver)
    for m in range(1, today.month):
        post_month(today.year, m)
    # this year's months close in order up to the one before last (last month is still being checked)
    from coop import review
    from coop.periods import close_period, next_to_close

    while next_to_close(session) < (today.year, today.month - 1):
        close_period(session, *next_to_close(session), user_id=preparer)
    # a bank interest credit of last year found after its books were closed and published:
    # corrected through 以前年度损益调整 into 未分配收益, not into last year's statements; the
    # accountant prepares it and the village head reviews and posts it
    if preparer is not None and approver is not None:
        correction = review.prepare(
            session,
            date=today,
            summary="补记上年12月银行存款利息（银行对账单迟到）",
            lines=[Line("102", debit=8_640, memo="银行对账单")],
            preparer_id=preparer,
            attachments=1,
            correction_year=year,
        )
        review.review_and_post(session, correction.id, reviewer_id=approver)
    _seed_review_queue(session, users, acc, today)


def _seed_review_queue(session: Session, users: dict[str, Any], acc: dict[str, str], today: date) -> None:
    """What the review queue shows in the demo: two drafts the accountant prepared (one would take
    the cash box below zero) and this month's recurring entries, posted at once, awaiting review."""
    from coop import review
    from coop.ledger import Line
    from coop.recurring import run_recurring

    if "kuaiji" not in users:
        return
    preparer = users["kuaiji"].id
    first = today.replace(day=1)
    if "cunzhang" in users:  # the village head has reviewed what the system posted before this month
        for v in review.unreviewed_vouchers(session, limit=100_000):
            if v.date < first and v.preparer_id != users["cunzhang"].id:
                review.mark_reviewed(session, v.id, reviewer_id=users["cunzhang"].id)
    run_recurring(session, today, user_id=None)  # the system posts; an official reviews
    review.prepare(
        session,
        date=first,
        summary="支付村道路灯电费",
        lines=[Line(acc["lights"], debit=126_000), Line("102", credit=126_000)],
        preparer_id=preparer,
        attachments=1,
    )
    review.prepare(
        session,
        date=first,
        summary="现金支付敬老慰问品（待核对收据）",
        lines=[Line(acc["welfare"], debit=5_000_000), Line("101", credit=5_000_000)],
        preparer_id=preparer,
        attachments=2,
    )


def _code(account: Account | None) -> str:
    assert account is not None  # add_enterprise gives every enterprise its accounts
    return account.code


def _id(session: Session, code: str) -> int:
    from coop.ledger import get_account

    account = get_account(session, code)
    assert account is not None, code  # the chart is loaded before the demo posts
    return account.id
