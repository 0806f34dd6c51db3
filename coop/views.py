"""Village books pages (officials) and the public disclosure pages (anyone).

Thin views: parse the request, call a service in coop/, commit, render.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import pgettext
from flask_login import current_user
from sqlalchemy import func, select

from coop import disclosure as disclosure_svc
from coop import distribution as dist_svc
from coop import members as members_svc
from coop import periods as periods_svc
from coop import reports
from coop.export import Fen, table_csv, table_xlsx
from coop.ledger import (
    BooksBusy,
    LedgerError,
    Line,
    chain_head,
    descendant_ids,
    ensure_account,
    ensure_chart,
    post_voucher,
    reverse_voucher,
    reversed_ids,
    verify_chain,
)
from coop.models import (
    Account,
    Balance,
    Disclosure,
    Distribution,
    Enterprise,
    Household,
    MemberAccount,
    Period,
    RecurringEntry,
    TransactionVolume,
    Voucher,
)
from core import clock, parse
from core.errors import DomainError
from core.models import AuditEntry, User
from core.money import parse_yuan
from core.web import attempt, db_session, role_required

bp = Blueprint("coop", __name__, url_prefix="/coop")
public_bp = Blueprint("disclosure", __name__)
staff = role_required("admin", "official")
VOUCHER_ROWS = 6  # line rows on the new-voucher form (empty rows are ignored)


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    try:
        value = int(request.args.get(name, default))
    except ValueError:
        abort(400, _("%(name)s must be a number", name=name))
    if not lo <= value <= hi:
        abort(400, _("%(name)s must be between %(lo)d and %(hi)d", name=name, lo=lo, hi=hi))
    return value


def _year() -> int:
    return _int_arg("year", clock.today().year, 1990, 2200)


def _export(fmt: str, name: str, header: list[str], rows: list[list]) -> Response | None:
    if fmt == "csv":
        return Response(
            table_csv(header, rows),
            mimetype="text/csv",
            headers={"Content-Disposition": f"attachment; filename={name}.csv"},
        )
    if fmt == "xlsx":
        return Response(
            table_xlsx(name, header, rows),
            mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": f"attachment; filename={name}.xlsx"},
        )
    return None


def _postable_accounts(session) -> list[Account]:
    accounts = list(session.scalars(select(Account).where(Account.active.is_(True)).order_by(Account.code)))
    parents = {a.parent_id for a in accounts if a.parent_id}
    return [a for a in accounts if a.id not in parents]


# ---------------------------------------------------------------- front page


@bp.get("/")
@staff
def index():
    """The books' front page: key balances, recent vouchers, the chain head."""
    session = db_session()
    today = clock.today()
    balances = reports.account_balances(session, today.year, today.month)
    ie = reports.income_expense(session, today.year, 1, today.month)
    recent = list(session.scalars(select(Voucher).order_by(Voucher.seq.desc()).limit(8)))
    seq, head = chain_head(session)
    drafts = session.scalar(select(func.count(Disclosure.id)).where(Disclosure.status == "draft"))
    return render_template(
        "coop/index.html",
        cash=balances.get("101", 0),
        bank=balances.get("102", 0),
        ie=ie,
        recent=recent,
        chain_seq=seq,
        chain_hash=head,
        drafts=drafts,
        year=today.year,
        chart_loaded=_chart_loaded(session),
    )


def _chart_loaded(session) -> bool:
    return session.scalar(select(func.count(Account.id))) > 0


@bp.post("/chart")
@staff
def load_chart():
    """Load the official chart of accounts into empty books (the same as `flask coop load-chart`)."""
    with attempt() as result:
        ensure_chart(db_session())
    if result.ok:
        flash(_("The chart of accounts is loaded."), "success")
    target = request.form.get("next") or ""
    return redirect(
        target if target.startswith("/") and not target.startswith("//") else url_for("coop.index")
    )


@bp.post("/verify")
@staff
def verify():
    """Recompute the hash chain now and say whether it holds."""
    result = verify_chain(db_session())
    if result.ok:
        flash(_("The chain holds: %(n)d vouchers verified.", n=result.vouchers), "success")
    else:
        flash(_("Verification FAILED: %(problem)s", problem=result.problem), "error")
    return redirect(url_for("coop.index"))


# ---------------------------------------------------------------- vouchers


@bp.get("/vouchers")
@staff
def vouchers():
    """The journal: vouchers of a year (optionally a month), newest first."""
    session = db_session()
    year = _year()
    month = _int_arg("month", 0, 0, 12)
    page = _int_arg("page", 1, 1, 100000)
    stmt = select(Voucher).where(Voucher.year == year)
    if month:
        stmt = stmt.where(
            Voucher.date >= dt.date(year, month, 1), Voucher.date <= reports.month_end(year, month)
        )
    total = session.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = list(session.scalars(stmt.order_by(Voucher.number.desc()).offset((page - 1) * 50).limit(50)))
    return render_template(
        "coop/vouchers.html",
        vouchers=rows,
        year=year,
        month=month,
        page=page,
        pages=max(1, (total + 49) // 50),
        total=total,
        reversed=reversed_ids(session, [v.id for v in rows]),
    )


@bp.route("/vouchers/new", methods=["GET", "POST"])
@staff
def new_voucher():
    """Enter a voucher (记账凭证): date, summary, attachments and two or more lines."""
    session = db_session()
    accounts = _postable_accounts(session)
    form = request.form
    error = None
    if request.method == "POST":
        for _try in range(3):  # a posting refused only because the books were busy is tried again
            with attempt(flash_error=False) as result:
                lines = []
                for i in range(VOUCHER_ROWS):
                    code = form.get(f"account_{i}", "").strip()
                    debit_text, credit_text = (
                        form.get(f"debit_{i}", "").strip(),
                        form.get(f"credit_{i}", "").strip(),
                    )
                    if not (code or debit_text or credit_text):
                        continue
                    lines.append(
                        Line(
                            code,
                            debit=parse_yuan(debit_text) if debit_text else 0,
                            credit=parse_yuan(credit_text) if credit_text else 0,
                            memo=form.get(f"memo_{i}", ""),
                        )
                    )
                voucher = post_voucher(
                    session,
                    date=parse.date_field(form.get("date")),
                    summary=form.get("summary", ""),
                    lines=lines,
                    attachments=parse.whole_number(form.get("attachments"), hi=999, default=0),
                    preparer_id=current_user.id,
                )
            if not isinstance(result.exception, BooksBusy):
                break
        if result.ok:
            flash(_("Voucher %(label)s posted.", label=voucher.label), "success")
            return redirect(url_for("coop.voucher", voucher_id=voucher.id))
        error = result.error
    return render_template(
        "coop/voucher_new.html",
        accounts=accounts,
        rows=range(VOUCHER_ROWS),
        form=form,
        error=error,
        today=clock.today(),
        chart_loaded=bool(accounts) or _chart_loaded(session),
    ), (400 if error else 200)


@bp.get("/vouchers/<int:voucher_id>")
@staff
def voucher(voucher_id: int):
    """One voucher with its lines, hash and reversal."""
    session = db_session()
    v = session.get(Voucher, voucher_id) or abort(404)
    users = {
        u.id: u
        for u in session.scalars(select(User).where(User.id.in_([v.preparer_id or 0, v.approver_id or 0])))
    }
    reversal = reversed_ids(session, [v.id]).get(v.id)
    original = session.get(Voucher, v.reverses_id) if v.reverses_id else None
    return render_template(
        "coop/voucher.html", v=v, users=users, reversal=reversal, original=original, today=clock.today()
    )


@bp.post("/vouchers/<int:voucher_id>/reverse")
@staff
def reverse(voucher_id: int):
    """Correct a posted voucher by posting its reversal."""
    with attempt() as result:
        day = parse.date_field(request.form.get("date"), default=clock.today())
        r = reverse_voucher(db_session(), voucher_id, date=day, preparer_id=current_user.id)
    if not result.ok:
        return redirect(url_for("coop.voucher", voucher_id=voucher_id))
    flash(_("Reversal %(label)s posted.", label=r.label), "success")
    return redirect(url_for("coop.voucher", voucher_id=r.id))


# ---------------------------------------------------------------- accounts and periods


@bp.route("/accounts", methods=["GET", "POST"])
@staff
def accounts():
    """The chart of accounts; officials add sub-accounts."""
    session = db_session()
    if request.method == "POST":
        with attempt() as result:
            a = ensure_account(session, request.form.get("parent", ""), request.form.get("name", ""))
        if result.ok:
            flash(_("Account %(code)s %(name)s ready.", code=a.code, name=a.name), "success")
        return redirect(url_for("coop.accounts"))
    rows = reports.tree_order(list(session.scalars(select(Account).order_by(Account.code))))
    _by_id, depth = reports._tree(rows)
    return render_template("coop/accounts.html", rows=rows, depth=depth, chart_loaded=bool(rows))


@bp.route("/periods", methods=["GET", "POST"])
@staff
def periods():
    """Months of a year, open or closed; close a month."""
    session = db_session()
    year = _year()
    if request.method == "POST":
        with attempt() as result:
            month = parse.whole_number(request.form.get("month"), lo=1, hi=12)
            periods_svc.close_period(session, year, month, user_id=current_user.id)
        if result.ok:
            flash(_("Period closed."), "success")
        return redirect(url_for("coop.periods", year=year))
    closed = {
        p.month: p
        for p in session.scalars(select(Period).where(Period.year == year, Period.closed.is_(True)))
    }
    counts = dict(
        session.execute(
            select(func.extract("month", Voucher.date), func.count(Voucher.id))
            .where(Voucher.year == year)
            .group_by(func.extract("month", Voucher.date))
        ).all()
    )
    counts = {int(k): v for k, v in counts.items()}
    return render_template("coop/periods.html", year=year, closed=closed, counts=counts)


# ---------------------------------------------------------------- reports


@bp.get("/reports/trial-balance")
@staff
def trial_balance():
    """科目余额表 for a range of months, with CSV/XLSX export."""
    session = db_session()
    year = _year()
    m1, m2 = (
        _int_arg("from", 1, 1, 12),
        _int_arg("to", clock.today().month if year == clock.today().year else 12, 1, 12),
    )
    if m1 > m2:
        abort(400, _("The first month must not be after the last."))
    tb = reports.trial_balance(session, year, m1, m2)
    header = [
        _("Code"),
        _("Account"),
        _("Opening debit"),
        _("Opening credit"),
        _("Debit"),
        _("Credit"),
        _("Closing debit"),
        _("Closing credit"),
    ]
    rows = [
        [
            r.code,
            r.account.name,
            *map(Fen, reports.split(r.opening)),
            Fen(r.debit),
            Fen(r.credit),
            *map(Fen, reports.split(r.closing)),
        ]
        for r in tb.rows
    ]
    resp = _export(request.args.get("format", ""), f"trial-balance-{year}-{m1:02d}-{m2:02d}", header, rows)
    return resp or render_template(
        "coop/trial_balance.html", tb=tb, split=reports.split, year=year, m1=m1, m2=m2
    )


@bp.get("/reports/income-expense")
@staff
def income_expense():
    """收支明细表: income and expense by account for a range of months."""
    session = db_session()
    year = _year()
    m1, m2 = _int_arg("from", 1, 1, 12), _int_arg("to", 12, 1, 12)
    if m1 > m2:
        abort(400, _("The first month must not be after the last."))
    ie = reports.income_expense(session, year, m1, m2)
    header = [_("Code"), _("Account"), _("Type"), pgettext("books", "Amount")]
    rows = [[r.code, r.account.name, _("Income"), Fen(r.credit - r.debit)] for r in ie.income] + [
        [r.code, r.account.name, _("Expense"), Fen(r.debit - r.credit)] for r in ie.expense
    ]
    resp = _export(request.args.get("format", ""), f"income-expense-{year}-{m1:02d}-{m2:02d}", header, rows)
    return resp or render_template("coop/income_expense.html", ie=ie, year=year, m1=m1, m2=m2)


@bp.get("/reports/balance-sheet")
@staff
def balance_sheet():
    """资产负债表 at the end of a month."""
    session = db_session()
    year = _year()
    month = _int_arg("month", clock.today().month if year == clock.today().year else 12, 1, 12)
    bs = reports.balance_sheet(session, year, month)
    header = [_("Section"), _("Code"), _("Account"), pgettext("books", "Amount")]
    rows = (
        [[_("Assets"), a.code, a.name, Fen(v)] for a, v in bs.assets]
        + [[_("Liabilities"), a.code, a.name, Fen(v)] for a, v in bs.liabilities]
        + [[_("Equity"), a.code, a.name, Fen(v)] for a, v in bs.equity]
    )
    resp = _export(request.args.get("format", ""), f"balance-sheet-{year}-{month:02d}", header, rows)
    return resp or render_template("coop/balance_sheet.html", bs=bs, year=year, month=month)


@bp.get("/reports/income-statement")
@staff
def income_statement():
    """收益及收益分配表 for a year."""
    session = db_session()
    year = _year()
    st = reports.income_statement(session, year)
    header = [_("Item"), pgettext("books", "Amount")]
    rows = (
        [[f"{a.code} {a.name}", Fen(v)] for a, v in st.income]
        + [[f"{a.code} {a.name}", Fen(-v)] for a, v in st.expense]
        + [
            [_("Surplus of the year"), Fen(st.surplus)],
            [_("Undistributed at the start of the year"), Fen(st.opening_undistributed)],
            [_("Distributable surplus"), Fen(st.distributable)],
            [_("Reserve and public-welfare fund"), Fen(st.reserve)],
            [_("Distributed to member households"), Fen(st.to_households)],
            [_("Undistributed at the end of the year"), Fen(st.closing_undistributed)],
        ]
    )
    resp = _export(request.args.get("format", ""), f"income-statement-{year}", header, rows)
    return resp or render_template("coop/income_statement.html", st=st, year=year)


@bp.get("/accounts/<code>")
@staff
def ledger_detail(code: str):
    """The lines of one account (and its sub-accounts) in a year: the general ledger page."""
    session = db_session()
    year = _year()
    account = session.scalar(select(Account).where(Account.code == code)) or abort(404)
    ids = descendant_ids(session, account.id)
    start = int(
        session.scalar(
            select(func.sum(Balance.debit - Balance.credit)).where(
                Balance.account_id.in_(ids), Balance.period < year * 100 + 1
            )
        )
        or 0
    )
    lines, running = [], start
    for v, ln in reports.account_lines(session, ids, dt.date(year, 1, 1), dt.date(year, 12, 31), limit=2000):
        running += ln.debit - ln.credit
        lines.append((v, ln, running))
    return render_template("coop/ledger_detail.html", account=account, year=year, opening=start, lines=lines)


# ---------------------------------------------------------------- members and shares


@bp.route("/members", methods=["GET", "POST"])
@staff
def members():
    """Member households and the share register; add households, issue and transfer shares."""
    session = db_session()
    if request.method == "POST":
        form = request.form
        with attempt() as result:
            action = parse.choice(form.get("action"), ("add", "issue", "transfer"))
            on = parse.date_field(form.get("on"), default=clock.today())
            if action == "add":
                members_svc.add_household(
                    session,
                    code=form.get("code", ""),
                    head_name=form.get("head_name", ""),
                    members=parse.whole_number(form.get("members"), lo=1, hi=1000, default=1),
                    phone=form.get("phone") or None,
                    address=form.get("address") or None,
                    joined_on=on,
                    user_id=current_user.id,
                )
            elif action == "issue":
                members_svc.issue_shares(
                    session,
                    parse.whole_number(form.get("household_id")),
                    parse.whole_number(form.get("shares"), lo=-(10**9), hi=10**9),
                    on=on,
                    kind="initial",
                    note=form.get("note", ""),
                    user_id=current_user.id,
                )
            else:
                members_svc.transfer_shares(
                    session,
                    parse.whole_number(form.get("from_id")),
                    parse.whole_number(form.get("to_id")),
                    parse.whole_number(form.get("shares"), lo=1, hi=10**9),
                    on=on,
                    note=form.get("note", ""),
                    user_id=current_user.id,
                )
        if result.ok:
            flash(_("Saved."), "success")
        return redirect(url_for("coop.members"))
    households = list(session.scalars(select(Household).order_by(Household.code)))
    shares = reports.shares_by_household(session)
    return render_template(
        "coop/members.html",
        households=households,
        shares=shares,
        total=sum(shares.values()),
        today=clock.today(),
    )


@bp.post("/members/<int:household_id>")
@staff
def update_member(household_id: int):
    """Correct a household's details (head, members, contact, active); the change is audited."""
    session = db_session()
    household = session.get(Household, household_id) or abort(404)
    form = request.form
    with attempt() as result:
        members_svc.update_household(
            session,
            household,
            user_id=current_user.id,
            head_name=form.get("head_name", ""),
            members=parse.whole_number(form.get("members"), lo=0, hi=1000, default=0),
            phone=form.get("phone", "").strip()[:40] or None,
            address=form.get("address", "").strip()[:200] or None,
            active=form.get("active") == "on",
        )
    if result.ok:
        flash(_("Saved."), "success")
    return redirect(url_for("coop.member", household_id=household_id))


@bp.get("/members/<int:household_id>")
@staff
def member(household_id: int):
    """A household's statement: shares and their history, account movements, distributions."""
    session = db_session()
    try:
        st = reports.member_statement(session, household_id, _year())
    except ValueError:
        abort(404)
    names = {h.id: h for h in session.scalars(select(Household))}
    history = [
        e
        for e in session.scalars(
            select(AuditEntry).where(
                AuditEntry.entity_type == "coop_households", AuditEntry.entity_id == str(household_id)
            )
        )
    ]
    return render_template("coop/member.html", st=st, names=names, history=history)


# ---------------------------------------------------------------- enterprises


@bp.get("/enterprises")
@staff
def enterprises():
    """Collective enterprises, cooperatives and contracts with their income this year; recurring entries."""
    session = db_session()
    year = _year()
    ents = list(session.scalars(select(Enterprise).order_by(Enterprise.id)))
    ie = reports.income_expense(session, year)
    by_code = {r.code: r for r in ie.income + ie.expense}
    recurring = list(session.scalars(select(RecurringEntry).order_by(RecurringEntry.id)))
    return render_template(
        "coop/enterprises.html", ents=ents, by_code=by_code, year=year, recurring=recurring
    )


@bp.get("/enterprises/<slug>")
@staff
def enterprise(slug: str):
    """A cooperative's member accounts, transaction volumes and a surplus return preview."""
    session = db_session()
    year = _year()
    ent = session.scalar(select(Enterprise).where(Enterprise.slug == slug)) or abort(404)
    accounts = list(session.scalars(select(MemberAccount).where(MemberAccount.enterprise_id == ent.id)))
    volumes = dict(
        session.execute(
            select(TransactionVolume.household_id, TransactionVolume.amount).where(
                TransactionVolume.enterprise_id == ent.id, TransactionVolume.year == year
            )
        ).all()
    )
    plan, error = None, None
    pool_text = request.args.get("pool", "")
    if pool_text and accounts:
        try:
            pool = parse_yuan(pool_text)
            plan = dist_svc.cooperative_plan(
                pool,
                [
                    (str(a.household_id), volumes.get(a.household_id, 0), a.capital + a.reserve_share)
                    for a in accounts
                ],
                volume_percent=request.args.get("volume_percent", "60"),
            )
        except DomainError as exc:  # a preview writes nothing
            error = exc.translated(_)
    return render_template(
        "coop/enterprise.html",
        ent=ent,
        accounts=accounts,
        volumes=volumes,
        year=year,
        plan=plan,
        error=error,
        pool=pool_text,
        volume_percent=request.args.get("volume_percent", "60"),
    )


# ---------------------------------------------------------------- year end


@bp.route("/distribution", methods=["GET", "POST"])
@staff
def distribution():
    """Year-end closing and distribution: preview the plan, then post it."""
    session = db_session()
    year = _int_arg("year", clock.today().year - 1, 1990, 2200)
    reserve = request.values.get("reserve", "10")
    payout = request.values.get("payout", "100")
    posted = session.scalar(select(Distribution).where(Distribution.year == year))
    plan = error = None
    if request.method == "POST":
        with attempt(flash_error=False) as result:
            dist_svc.post_distribution(
                session,
                year,
                reserve_percent=reserve,
                payout_percent=payout,
                user_id=current_user.id,
                expected=request.form.get("fingerprint"),
            )
        if result.ok:
            flash(_("The %(year)d distribution has been posted and the year closed.", year=year), "success")
            return redirect(url_for("coop.distribution", year=year))
        error = result.error
    if posted is None:
        try:
            plan = dist_svc.preview(session, year, reserve_percent=reserve, payout_percent=payout)
        except LedgerError as exc:  # a preview writes nothing: just say why there is none
            error = error or exc.translated(_)
    return render_template(
        "coop/distribution.html",
        year=year,
        reserve=reserve,
        payout=payout,
        plan=plan,
        posted=posted,
        error=error,
        fingerprint=dist_svc.plan_fingerprint(plan) if plan else "",
    ), (400 if error else 200)


# ---------------------------------------------------------------- disclosures and audit


@bp.route("/disclosures", methods=["GET", "POST"])
@staff
def disclosures():
    """Draft a disclosure for a month, quarter or year, and approve drafts for publication."""
    session = db_session()
    if request.method == "POST":
        form = request.form
        with attempt() as result:
            if form.get("action") == "approve":
                d = disclosure_svc.approve(
                    session, parse.whole_number(form.get("id")), user_id=current_user.id
                )
                message = _("%(title)s is approved and public.", title=d.title)
            else:
                d = disclosure_svc.draft(
                    session,
                    parse.whole_number(form.get("year"), lo=1900, hi=2200),
                    form.get("kind", "quarter"),
                    parse.whole_number(form.get("number"), lo=1, hi=12, default=1),
                    user_id=current_user.id,
                )
                message = _("Draft %(title)s ready for review.", title=d.title)
        if result.ok:
            flash(message, "success")
        return redirect(url_for("coop.disclosures"))
    rows = list(session.scalars(select(Disclosure).order_by(Disclosure.end.desc(), Disclosure.id.desc())))
    return render_template("coop/disclosures.html", rows=rows, today=clock.today())


@bp.get("/disclosures/<int:disclosure_id>")
@staff
def disclosure_draft(disclosure_id: int):
    """Review a disclosure (draft or approved) as the public will see it."""
    d = db_session().get(Disclosure, disclosure_id) or abort(404)
    return render_template("coop/disclosure.html", d=d, c=d.content, staff_view=True)


@bp.get("/audit")
@staff
def audit_log():
    """Who did what and when in the books."""
    session = db_session()
    page = _int_arg("page", 1, 1, 100000)
    rows = list(
        session.execute(
            select(AuditEntry, User.username)
            .outerjoin(User, User.id == AuditEntry.user_id)
            .where(AuditEntry.entity_type.startswith("coop_"))
            .order_by(AuditEntry.id.desc())
            .offset((page - 1) * 100)
            .limit(100)
        )
    )
    return render_template("coop/audit.html", rows=rows, page=page)


@public_bp.get("/disclosure")
def disclosure_index():
    """Public disclosure (财务公开): published statements, no login needed."""
    return render_template("coop/disclosure_index.html", rows=disclosure_svc.published(db_session()))


@public_bp.get("/disclosure/<int:disclosure_id>")
def disclosure_detail(disclosure_id: int):
    """One published statement, read-only, with the chain head it was published with."""
    d = db_session().get(Disclosure, disclosure_id)
    if d is None or d.status != "approved":
        abort(404)
    return render_template("coop/disclosure.html", d=d, c=d.content, staff_view=False)
