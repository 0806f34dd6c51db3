"""Village books pages (officials) and the public disclosure pages (anyone).

Thin views: parse the request, call a service in coop/, commit, render.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import get_locale, pgettext
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select

from coop import chain, reports, statements
from coop import corrections as corrections_svc
from coop import disclosure as disclosure_svc
from coop import distribution as dist_svc
from coop import members as members_svc
from coop import periods as periods_svc
from coop import review as review_svc
from coop import settings as books_settings
from coop.export import Fen, table_csv, table_xlsx
from coop.ledger import (
    BooksBusy,
    LedgerError,
    Line,
    chain_head,
    descendant_ids,
    ensure_account,
    ensure_chart,
    first_open_day,
    last_allowed_day,
    latest_closed,
    reversed_ids,
)
from coop.models import (
    Account,
    Balance,
    Disclosure,
    Distribution,
    Enterprise,
    Household,
    MemberAccount,
    RecurringEntry,
    TransactionVolume,
    Voucher,
    VoucherDraft,
)
from coop.verify import verify_books
from core import clock, parse
from core.errors import N_, DomainError
from core.models import AuditEntry, User
from core.money import format_yuan, parse_yuan
from core.web import attempt, db_session, role_required

bp = Blueprint("coop", __name__, url_prefix="/coop")
public_bp = Blueprint("disclosure", __name__)
STAFF = ("admin", "official")  # prepare, review and post; close; draft and approve disclosures
READERS = (*STAFF, "oversight")  # the 民主理财小组 reads the books and signs disclosures off
staff = role_required(*STAFF)
readers = role_required(*READERS)


@bp.context_processor
def _coop_helpers() -> dict:
    """For the staff pages: the fingerprint a sign-off or an approval carries (what the signer saw)."""
    return {"digest": disclosure_svc.digest}


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


def _export(
    fmt: str, name: str, header: list[str], rows: list[list], *, preamble: list[list] | None = None
) -> Response | None:
    if fmt == "csv":
        return Response(
            table_csv(header, rows),
            mimetype="text/csv",
            headers={"Content-Disposition": f"attachment; filename={name}.csv"},
        )
    if fmt == "xlsx":
        return Response(
            table_xlsx(name, header, rows, preamble=preamble),
            mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": f"attachment; filename={name}.xlsx"},
        )
    return None


def _postable_accounts(session) -> list[Account]:
    accounts = list(session.scalars(select(Account).where(Account.active.is_(True)).order_by(Account.code)))
    parents = {a.parent_id for a in accounts if a.parent_id}
    return [a for a in accounts if a.id not in parents]


def _require_staff() -> None:
    """A write on a page the oversight group may read: officials only."""
    if current_user.role not in STAFF:
        abort(403)


def _confirmed() -> bool:
    return request.form.get("confirm") == "yes"


def _ask_confirmation(message: str, *, back: str, action: str | None = None):
    """An irreversible action was submitted without its confirmation: say what will happen and
    offer the same form again with ``confirm=yes`` (works without JavaScript). Nothing was done."""
    fields = [(k, v) for k, v in request.form.items(multi=True) if k not in ("csrf_token", "confirm")]
    target = action or (request.full_path if request.query_string else request.path)
    return render_template("coop/confirm.html", message=message, fields=fields, action=target, back=back), 400


# ---------------------------------------------------------------- front page


@bp.get("/")
@readers
def index():
    """The books' front page: key balances, recent vouchers, the chain head."""
    session = db_session()
    today = clock.today()
    balances = reports.account_balances(session, today.year, today.month)
    ie = reports.income_expense(session, today.year, 1, today.month)
    recent = list(session.scalars(select(Voucher).order_by(Voucher.seq.desc()).limit(8)))
    seq, head = chain_head(session)
    drafts = session.scalar(
        select(func.count(Disclosure.id)).where(Disclosure.status.in_(("draft", "signed_off")))
    )
    return render_template(
        "coop/index.html",
        cash=balances.get("101", 0),
        bank=balances.get("102", 0),
        ie=ie,
        recent=recent,
        chain_seq=seq,
        chain_hash=head,
        drafts=drafts,
        voucher_drafts=review_svc.draft_count(session),
        unreviewed=review_svc.unreviewed_count(session),
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
@readers
def verify():
    """Recompute the hash chain now and say whether it holds."""
    result = verify_books(db_session())
    if result.ok:
        flash(
            _(
                "The chain holds: %(n)d vouchers and %(r)d records verified, every covered row matches.",
                n=result.vouchers,
                r=result.records,
            ),
            "success",
        )
    else:
        flash(_("Verification FAILED: %(problem)s", problem=result.problem), "error")
    return redirect(url_for("coop.index"))


# ---------------------------------------------------------------- vouchers


@bp.get("/vouchers")
@readers
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
        unreviewed=review_svc.unreviewed_among(session, [v.id for v in rows]),
    )


def _lines_from_form(form) -> list[Line]:
    lines = []
    for i in range(VOUCHER_ROWS):
        code = form.get(f"account_{i}", "").strip()
        debit_text, credit_text = form.get(f"debit_{i}", "").strip(), form.get(f"credit_{i}", "").strip()
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
    return lines


def _plain_yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}" if fen else ""


def _draft_form(draft: VoucherDraft) -> dict[str, str]:
    """The voucher form filled in from a draft (for editing it)."""
    form = {"date": draft.date.isoformat(), "summary": draft.summary, "attachments": str(draft.attachments)}
    for i, ln in enumerate(review_svc.draft_lines(draft)[:VOUCHER_ROWS]):
        form |= {
            f"account_{i}": ln.account,
            f"debit_{i}": _plain_yuan(ln.debit),
            f"credit_{i}": _plain_yuan(ln.credit),
            f"memo_{i}": ln.memo,
        }
    return form


def _flash_cash_warnings(draft: VoucherDraft) -> None:
    for w in draft.warnings or []:
        flash(
            _(
                "Warning: this voucher takes %(code)s %(name)s below zero (%(after)s). It is saved; the "
                "reviewer will see the warning.",
                code=w["code"],
                name=w["name"],
                after=format_yuan(w["after"]),
            ),
            "warning",
        )


def _voucher_form(draft: VoucherDraft | None = None):
    """Prepare (制单) a new voucher draft, or change one: date, summary, attachments, two or more lines.

    Saving creates (or changes) a draft; it is posted only when another official reviews it.
    """
    session = db_session()
    accounts = _postable_accounts(session)
    form = request.form if request.method == "POST" else (_draft_form(draft) if draft else {})
    error = None
    if request.method == "POST":
        with attempt(flash_error=False) as result:
            day = parse.date_field(form.get("date"))
            summary = form.get("summary", "")
            lines = _lines_from_form(form)
            attachments = parse.whole_number(form.get("attachments"), hi=999, default=0)
            if draft is None:
                saved = review_svc.prepare(
                    session,
                    date=day,
                    summary=summary,
                    lines=lines,
                    attachments=attachments,
                    preparer_id=current_user.id,
                )
            else:
                saved = review_svc.update(
                    session,
                    draft.id,
                    user_id=current_user.id,
                    date=day,
                    summary=summary,
                    lines=lines,
                    attachments=attachments,
                )
        if result.ok:
            flash(
                _(
                    "Draft #%(id)d saved. Another official must review it (审核) before it is posted.",
                    id=saved.id,
                ),
                "success",
            )
            _flash_cash_warnings(saved)
            return redirect(url_for("coop.draft", draft_id=saved.id))
        error = result.error
    return render_template(
        "coop/voucher_new.html",
        accounts=accounts,
        rows=range(VOUCHER_ROWS),
        form=form,
        error=error,
        draft=draft,
        today=clock.today(),
        first_open=first_open_day(session).isoformat() if accounts else "",
        last_allowed=last_allowed_day(session).isoformat() if accounts else "",
        chart_loaded=bool(accounts) or _chart_loaded(session),
    ), (400 if error else 200)


@bp.route("/vouchers/new", methods=["GET", "POST"])
@staff
def new_voucher():
    """Prepare a voucher (制单): it is saved as a draft for another official to review."""
    return _voucher_form()


@bp.route("/drafts/<int:draft_id>/edit", methods=["GET", "POST"])
@staff
def edit_draft(draft_id: int):
    """Change a draft (its preparer, while it is a draft; the service refuses anyone else)."""
    draft = db_session().get(VoucherDraft, draft_id) or abort(404)
    if request.method == "GET" and (draft.status != "draft" or draft.preparer_id != current_user.id):
        flash(_("Only the preparer can change a draft, and only while it is a draft."), "error")
        return redirect(url_for("coop.draft", draft_id=draft_id))
    return _voucher_form(draft)


@bp.get("/review")
@readers
def review_queue():
    """The review queue (审核): drafts awaiting review, and vouchers posted at once that await review."""
    session = db_session()
    drafts = review_svc.pending_drafts(session)
    posted = review_svc.unreviewed_vouchers(session)
    ids = {d.preparer_id for d in drafts} | {v.preparer_id for v in posted}
    users = {u.id: u for u in session.scalars(select(User).where(User.id.in_([i for i in ids if i])))}
    return render_template(
        "coop/review.html",
        drafts=drafts,
        posted=posted,
        cash_flags=review_svc.posted_cash_flags(session, posted),
        users=users,
        can_review=current_user.role in STAFF,
        unreviewed_total=review_svc.unreviewed_count(session),
    )


@bp.get("/drafts/<int:draft_id>")
@readers
def draft(draft_id: int):
    """One voucher draft: its lines, who prepared it, its warnings, and the reviewer's actions."""
    session = db_session()
    d = session.get(VoucherDraft, draft_id) or abort(404)
    lines = review_svc.posting_lines(session, d)
    names = {
        a.code: a
        for a in session.scalars(select(Account).where(Account.code.in_([ln.account for ln in lines])))
    }
    ids = [i for i in (d.preparer_id, d.reviewer_id, d.discarded_by) if i]
    users = {u.id: u for u in session.scalars(select(User).where(User.id.in_(ids)))}
    current_warnings = (
        [w.as_dict() for w in review_svc.cash_warnings(session, d.date, lines)] if d.status == "draft" else []
    )
    return render_template(
        "coop/draft.html",
        d=d,
        lines=lines,
        names=names,
        users=users,
        current_warnings=current_warnings,
        can_review=current_user.role in STAFF and d.status == "draft" and d.preparer_id != current_user.id,
        is_preparer=d.preparer_id == current_user.id and d.status == "draft",
        can_discard=current_user.role in STAFF and d.status == "draft",
    )


@bp.post("/drafts/<int:draft_id>/post")
@staff
def post_draft(draft_id: int):
    """审核并记账: review a draft and post it to the ledger (another official than the preparer)."""
    session = db_session()
    d = session.get(VoucherDraft, draft_id) or abort(404)
    if not _confirmed():
        return _ask_confirmation(
            _(
                "Draft #%(id)d (%(summary)s, %(total)s) will be posted to the ledger with you as its "
                "reviewer (审核). A posted voucher cannot be changed or deleted, only reversed.",
                id=d.id,
                summary=d.summary,
                total=format_yuan(d.total),
            ),
            back=url_for("coop.draft", draft_id=draft_id),
        )
    for _try in range(3):  # refused only because another posting held the books: try again
        with attempt(flash_error=False) as result:
            v = review_svc.review_and_post(
                session,
                draft_id,
                reviewer_id=current_user.id,
                expected_version=parse.whole_number(request.form.get("version"), lo=1, hi=10**9),
            )
        if not isinstance(result.exception, BooksBusy):
            break
    if not result.ok:
        flash(result.error or _("The voucher could not be posted."), "error")
        return redirect(url_for("coop.draft", draft_id=draft_id))
    flash(_("Voucher %(label)s reviewed and posted.", label=v.label), "success")
    return redirect(url_for("coop.voucher", voucher_id=v.id))


@bp.post("/drafts/<int:draft_id>/discard")
@staff
def discard_draft(draft_id: int):
    """Throw a draft away; it can never be posted afterwards."""
    session = db_session()
    d = session.get(VoucherDraft, draft_id) or abort(404)
    if not _confirmed():
        return _ask_confirmation(
            _(
                "Draft #%(id)d (%(summary)s) will be discarded and can never be posted.",
                id=d.id,
                summary=d.summary,
            ),
            back=url_for("coop.draft", draft_id=draft_id),
        )
    with attempt() as result:
        review_svc.discard(session, draft_id, user_id=current_user.id)
    if result.ok:
        flash(_("Draft #%(id)d discarded.", id=draft_id), "success")
    return redirect(url_for("coop.draft", draft_id=draft_id))


@bp.post("/vouchers/<int:voucher_id>/review")
@staff
def review_voucher(voucher_id: int):
    """Mark a voucher the system posted at once (shop, recurring, year end, reversal) as reviewed."""
    with attempt() as result:
        review_svc.mark_reviewed(db_session(), voucher_id, reviewer_id=current_user.id)
    if result.ok:
        flash(_("Voucher marked as reviewed."), "success")
    target = request.form.get("next") or ""
    if target.startswith("/") and not target.startswith("//"):
        return redirect(target)
    return redirect(url_for("coop.voucher", voucher_id=voucher_id))


@bp.get("/vouchers/<int:voucher_id>")
@readers
def voucher(voucher_id: int):
    """One voucher with its lines, hash and reversal."""
    session = db_session()
    v = session.get(Voucher, voucher_id) or abort(404)
    reviewer_id, reviewed_at = review_svc.review_of(session, v)
    ids = [v.preparer_id or 0, v.approver_id or 0, reviewer_id or 0]
    users = {u.id: u for u in session.scalars(select(User).where(User.id.in_(ids)))}
    reversal = reversed_ids(session, [v.id]).get(v.id)
    original = session.get(Voucher, v.reverses_id) if v.reverses_id else None
    return render_template(
        "coop/voucher.html",
        v=v,
        users=users,
        reversal=reversal,
        original=original,
        today=clock.today(),
        reviewer_id=reviewer_id,
        reviewed_at=reviewed_at,
        can_review=current_user.role in STAFF and reviewer_id is None and v.preparer_id != current_user.id,
        can_write=current_user.role in STAFF,
    )


@bp.post("/vouchers/<int:voucher_id>/reverse")
@staff
def reverse(voucher_id: int):
    """Prepare the red-ink reversal of a posted voucher as a draft; another official reviews and
    posts it (posting asks for confirmation then)."""
    session = db_session()
    session.get(Voucher, voucher_id) or abort(404)
    with attempt() as result:
        day = parse.date_field(request.form.get("date"), default=clock.today())
        d = review_svc.prepare_reversal(session, voucher_id, date=day, preparer_id=current_user.id)
    if not result.ok:
        return redirect(url_for("coop.voucher", voucher_id=voucher_id))
    flash(
        _("The reversal is prepared as draft #%(id)d: another official reviews it and posts it.", id=d.id),
        "success",
    )
    return redirect(url_for("coop.draft", draft_id=d.id))


# ---------------------------------------------------------------- accounts and periods


@bp.route("/settings", methods=["GET", "POST"])
@readers
def books_settings_page():
    """The books' settings: organisation, opening date (建账日期), the charter's 公积公益金 rate, how
    many days ahead a voucher may be dated, and whom villagers ask. Administrators change them."""
    session = db_session()
    error = None
    if request.method == "POST":
        if not current_user.has_role("admin"):
            abort(403)
        form = request.form
        with attempt(flash_error=False) as result:
            books_settings.update(
                session,
                user_id=current_user.id,
                name=form.get("name", ""),
                opening_date=parse.date_field(form.get("opening_date")),
                reserve_percent=form.get("reserve_percent", ""),
                future_grace_days=parse.whole_number(form.get("future_grace_days"), lo=0, hi=31, default=0),
                contact=form.get("contact", ""),
            )
        if result.ok:
            flash(_("Saved."), "success")
            return redirect(url_for("coop.books_settings_page"))
        error = result.error
    return render_template(
        "coop/settings.html",
        s=books_settings.get(session),
        form=request.form if error else None,
        error=error,
        can_edit=current_user.has_role("admin"),
    ), (400 if error else 200)


@bp.route("/accounts", methods=["GET", "POST"])
@readers
def accounts():
    """The chart of accounts; officials add sub-accounts."""
    session = db_session()
    if request.method == "POST":
        _require_staff()
        with attempt() as result:
            a = ensure_account(session, request.form.get("parent", ""), request.form.get("name", ""))
        if result.ok:
            flash(_("Account %(code)s %(name)s ready.", code=a.code, name=a.name), "success")
        return redirect(url_for("coop.accounts"))
    rows = reports.tree_order(list(session.scalars(select(Account).order_by(Account.code))))
    _by_id, depth = reports._tree(rows)
    return render_template("coop/accounts.html", rows=rows, depth=depth, chart_loaded=bool(rows))


@bp.route("/periods", methods=["GET", "POST"])
@readers
def periods():
    """Months of a year: which one can be closed next and why the others cannot; an admin may
    reopen the latest closed month, with a reason."""
    session = db_session()
    year = _year()
    if request.method == "POST":
        _require_staff()
        reopening = request.form.get("action") == "reopen"
        if not _confirmed():
            month_text = request.form.get("month", "?")[:4]
            return _ask_confirmation(
                _(
                    "Reopen %(period)s? Published disclosures covering it are withdrawn.",
                    period=f"{year}-{month_text}",
                )
                if reopening
                else _(
                    "Month %(month)s of %(year)d will be closed: nothing more can be posted into it or "
                    "before it, and only an administrator can reopen it, with a reason.",
                    month=month_text,
                    year=year,
                ),
                back=url_for("coop.periods", year=year),
            )
        with attempt() as result:
            month = parse.whole_number(request.form.get("month"), lo=1, hi=12)
            if reopening:
                periods_svc.reopen_period(
                    session, year, month, reason=request.form.get("reason", ""), user_id=current_user.id
                )
                message = _("Period reopened; disclosures covering it were withdrawn.")
            else:
                periods_svc.close_period(session, year, month, user_id=current_user.id)
                message = _("Period closed.")
        if result.ok:
            flash(message, "success")
        return redirect(url_for("coop.periods", year=year))
    counts = dict(
        session.execute(
            select(func.extract("month", Voucher.date), func.count(Voucher.id))
            .where(Voucher.year == year)
            .group_by(func.extract("month", Voucher.date))
        ).all()
    )
    counts = {int(k): v for k, v in counts.items()}
    nxt = periods_svc.next_to_close(session)
    return render_template(
        "coop/periods.html",
        year=year,
        months=periods_svc.year_status(session, year),
        counts=counts,
        next_period=f"{nxt[0]}-{nxt[1]:02d}",
        first_open=first_open_day(session),
        last_allowed=last_allowed_day(session),
        is_admin=current_user.has_role("admin"),
    )


@bp.route("/corrections", methods=["GET", "POST"])
@staff
def corrections():
    """Corrections to a closed year (以前年度损益调整): prepared here as a draft, posted in an open
    period when another official reviews it."""
    session = db_session()
    form = request.form
    error = None
    if request.method == "POST":
        with attempt(flash_error=False) as result:
            amount = parse_yuan(form.get("amount", "").strip())
            account = form.get("account", "").strip()
            effect = form.get("effect")
            if effect not in ("gain", "loss"):
                raise LedgerError(N_("say whether the closed year's surplus was understated or overstated"))
            line = Line(account, debit=amount) if effect == "gain" else Line(account, credit=amount)
            draft = review_svc.prepare(
                session,
                date=parse.date_field(form.get("date"), default=clock.today()),
                summary=form.get("summary", ""),
                lines=[line],
                preparer_id=current_user.id,
                attachments=parse.whole_number(form.get("attachments"), hi=999, default=0),
                correction_year=parse.whole_number(form.get("year"), lo=1900, hi=2200),
            )
        if result.ok:
            flash(
                _(
                    "Correction saved as draft #%(id)d: another official reviews it and posts it.",
                    id=draft.id,
                ),
                "success",
            )
            return redirect(url_for("coop.draft", draft_id=draft.id))
        error = result.error
    last = latest_closed(session)
    return render_template(
        "coop/corrections.html",
        rows=corrections_svc.corrections(session),
        # the balance-sheet side only: the closed year's income and expense is the adjustment itself
        accounts=[a for a in _postable_accounts(session) if a.kind in ("asset", "liability", "cost")],
        form=form,
        error=error,
        today=clock.today(),
        closed_year=(last[0] if last[1] == 12 else last[0] - 1) if last else None,
    ), (400 if error else 200)


# ---------------------------------------------------------------- reports


@bp.get("/reports/trial-balance")
@readers
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
    unreviewed = review_svc.unreviewed_count(session, dt.date(year, m1, 1), reports.month_end(year, m2))
    return resp or render_template(
        "coop/trial_balance.html", tb=tb, split=reports.split, year=year, m1=m1, m2=m2, unreviewed=unreviewed
    )


@bp.get("/reports/income-expense")
@readers
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
    unreviewed = review_svc.unreviewed_count(session, dt.date(year, m1, 1), reports.month_end(year, m2))
    return resp or render_template(
        "coop/income_expense.html", ie=ie, year=year, m1=m1, m2=m2, unreviewed=unreviewed
    )


def _statement_context(session) -> dict:
    """What every printed statement's head and foot show: organisation, unit, preparer."""
    from coop import settings as books_settings

    name = books_settings.get(session).name
    preparer = current_user.display_name or current_user.username
    return {"org_name": name, "preparer": preparer}


def _month_arg(year: int) -> int:
    today = clock.today()
    return _int_arg("month", today.month if year == today.year else 12, 1, 12)


def _english() -> bool:
    locale = get_locale()
    return locale is not None and locale.language != "zh"


def _statement_rows(st: statements.Statement, keys: list[str] | None = None) -> list[list]:
    return [
        [line.label_en if _english() else line.label, n, *map(Fen, line.amounts)]
        for n, line in enumerate(st.lines, 1)
        if keys is None or line.key in keys
    ]


def _statement_export(fmt: str, name: str, title: str, header: list[str], rows: list[list], period: str):
    session = db_session()
    ctx = _statement_context(session)
    preamble = [
        [title],
        [
            _("Prepared by (organisation): %(name)s", name=ctx["org_name"]),
            _("Period: %(period)s", period=period),
            _("Unit: yuan"),
        ],
    ]
    return _export(fmt, name, header, rows, preamble=preamble)


@bp.get("/reports/balance-sheet")
@readers
def balance_sheet():
    """资产负债表 at the end of a month: 年初数 and 期末数, the prescribed lines."""
    session = db_session()
    year = _year()
    month = _month_arg(year)
    bs = statements.balance_sheet(session, year, month)
    header = [_("Item"), _("Line"), _("Beginning of year"), _("End of period")]
    resp = _statement_export(
        request.args.get("format", ""),
        f"balance-sheet-{year}-{month:02d}",
        bs.title,
        header,
        _statement_rows(bs),
        bs.date,
    )
    unreviewed = review_svc.unreviewed_count(session, None, reports.month_end(year, month))
    return resp or render_template(
        "coop/balance_sheet.html",
        bs=bs,
        year=year,
        month=month,
        unreviewed=unreviewed,
        **_statement_context(session),
    )


@bp.get("/reports/income-statement")
@readers
def income_statement():
    """收益及收益分配表 from January to a month: 本年数 and 上年数."""
    session = db_session()
    year = _year()
    month = _int_arg("month", 12, 1, 12)
    st = statements.income_statement(session, year, month)
    header = [_("Item"), _("Line"), _("This year"), _("Last year")]
    resp = _statement_export(
        request.args.get("format", ""),
        f"income-statement-{year}-{month:02d}",
        st.title,
        header,
        _statement_rows(st),
        f"{year}-01 – {year}-{month:02d}",
    )
    unreviewed = review_svc.unreviewed_count(session, dt.date(year, 1, 1), reports.month_end(year, month))
    return resp or render_template(
        "coop/income_statement.html",
        st=st,
        year=year,
        month=month,
        unreviewed=unreviewed,
        **_statement_context(session),
    )


def _notes_rows(n: statements.Notes) -> list[list]:
    rows: list[list] = []
    for p in n.policies:
        rows.append([_("Accounting policies"), _(p["template"], **p["params"]), "", ""])
    for m in n.major_items:
        rows.append([_("Major items"), f"{m['voucher']} {m['summary']}", m["date"], Fen(m["amount"])])
    for c in n.contracts:
        rows.append([_("Contracts"), f"{c['name']}（{c['counterparty']}）", c["start"], Fen(c["posted"])])
    for r in n.subsidies:
        rows.append([_("Subsidies"), f"{r['code']} {r['name']}", "", Fen(r["amount"])])
    if n.text:
        rows.append([_("Other notes"), n.text, "", ""])
    return rows


@bp.route("/reports/notes", methods=["GET", "POST"])
@readers
def notes():
    """附注: generated policies, major items, contracts, subsidies, and the official's text for the year."""
    session = db_session()
    year = _year()
    error = None
    if request.method == "POST":
        _require_staff()
        with attempt(flash_error=False) as result:
            statements.save_note(session, year, request.form.get("text", ""), user_id=current_user.id)
        if result.ok:
            flash(_("The notes for %(year)d are saved.", year=year), "success")
            return redirect(url_for("coop.notes", year=year))
        error = result.error
    n = statements.notes(session, year)
    header = [_("Section"), _("Item"), _("Date"), pgettext("books", "Amount")]
    resp = _statement_export(
        request.args.get("format", ""), f"notes-{year}", "附注", header, _notes_rows(n), str(year)
    )
    users = {
        u.id: u for u in session.scalars(select(User).where(User.id == (n.note.updated_by if n.note else 0)))
    }
    return resp or render_template(
        "coop/notes.html",
        n=n,
        year=year,
        error=error,
        text=request.form.get("text") if error else n.text,
        users=users,
        **_statement_context(session),
    ), (400 if error else 200)


@bp.get("/reports/statements")
@readers
def statement_set():
    """The whole set for printing, one statement a page: balance sheet, income statement, trial
    balance, notes."""
    session = db_session()
    year = _year()
    month = _month_arg(year)
    return render_template(
        "coop/statements.html",
        bs=statements.balance_sheet(session, year, month),
        st=statements.income_statement(session, year, month),
        tb=reports.trial_balance(session, year, 1, month),
        n=statements.notes(session, year),
        split=reports.split,
        year=year,
        month=month,
        **_statement_context(session),
    )


@bp.get("/accounts/<code>")
@readers
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
@readers
def members():
    """Member households and the share register; add households, issue and transfer shares."""
    session = db_session()
    if request.method == "POST":
        _require_staff()
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
@readers
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
@readers
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
@readers
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


def _plan_options(values) -> dict:
    """The appropriations a person entered (amounts in yuan, the members' part as a rate or an amount)."""

    def amount(name: str) -> int:
        text = values.get(name, "").strip()
        return parse_yuan(text) if text else 0

    members_text = values.get("members_amount", "").strip()
    return {
        "payout_percent": values.get("payout", "100").strip() or "100",
        "members_amount": parse_yuan(members_text) if members_text else None,
        "outside_investors": amount("outside"),
        "other": amount("other"),
        "other_note": values.get("other_note", ""),
        "other_account": values.get("other_account", "").strip() or None,
    }


@bp.route("/distribution", methods=["GET", "POST"])
@readers
def distribution():
    """Year-end closing and distribution: enter the appropriations, preview the plan, then post it."""
    from coop import settings as books_settings

    session = db_session()
    year = _int_arg("year", clock.today().year - 1, 1990, 2200)
    posted = session.scalar(select(Distribution).where(Distribution.year == year))
    plan = error = None
    if request.method == "POST":
        _require_staff()
        if not _confirmed():
            return _ask_confirmation(
                _(
                    "The %(year)d distribution will be posted: the year's income and expense are closed, "
                    "the reserve and every household's part are booked, and all twelve months of %(year)d "
                    "are closed. This cannot be undone.",
                    year=year,
                ),
                back=url_for("coop.distribution", year=year),
            )
        with attempt(flash_error=False) as result:
            dist_svc.post_distribution(
                session,
                year,
                **_plan_options(request.form),
                user_id=current_user.id,
                expected=request.form.get("fingerprint"),
            )
        if result.ok:
            flash(_("The %(year)d distribution has been posted and the year closed.", year=year), "success")
            return redirect(url_for("coop.distribution", year=year))
        error = result.error
    if posted is None:
        try:
            plan = dist_svc.preview(session, year, **_plan_options(request.values))
        except DomainError as exc:  # a preview writes nothing: just say why there is none
            error = error or exc.translated(_)
    opens = dist_svc.year_end_opens(year)
    return render_template(
        "coop/distribution.html",
        year=year,
        values=request.values,
        plan=plan,
        posted=posted,
        error=error,
        fingerprint=dist_svc.plan_fingerprint(plan) if plan else "",
        reserve_percent=books_settings.get(session).reserve_percent,
        opens=opens,
        can_post=clock.today() >= opens,
        zone=clock.zone_name(),
    ), (400 if error else 200)


# ---------------------------------------------------------------- disclosures and audit


@bp.route("/disclosures", methods=["GET", "POST"])
@readers
def disclosures():
    """Draft a disclosure for a month, quarter or year, and approve drafts for publication."""
    session = db_session()
    if request.method == "POST":
        form = request.form
        action = form.get("action")
        if action == "sign_off":
            if current_user.role != "oversight":
                abort(403)
        else:
            _require_staff()
        if action in ("sign_off", "approve") and not _confirmed():
            target = (
                session.get(Disclosure, parse.whole_number(form.get("id"), default=0))
                if form.get("id", "").isdigit()
                else None
            )
            title = target.title if target is not None else form.get("id", "")
            if action == "sign_off":
                message = _(
                    "You sign %(title)s off for the oversight group (民主理财小组): you have checked it "
                    "against the books. An official then approves and publishes it.",
                    title=title,
                )
            else:
                message = _(
                    "%(title)s will be published on the public page (/disclosure) with your name as "
                    "approver. A published statement can never be changed.",
                    title=title,
                )
            return _ask_confirmation(message, back=url_for("coop.disclosures"))
        with attempt() as result:
            if action == "approve":
                d = disclosure_svc.approve(
                    session,
                    parse.whole_number(form.get("id")),
                    user_id=current_user.id,
                    expected=form.get("digest", ""),
                )
                message = _("%(title)s is approved and public.", title=d.title)
            elif action == "sign_off":
                d = disclosure_svc.sign_off(
                    session,
                    parse.whole_number(form.get("id")),
                    user_id=current_user.id,
                    expected=form.get("digest", ""),
                )
                message = _("%(title)s is signed off; an official can now approve it.", title=d.title)
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
    ids = {i for d in rows for i in (d.created_by, d.signed_off_by, d.approved_by) if i}
    users = {u.id: u for u in session.scalars(select(User).where(User.id.in_(ids)))}
    return render_template("coop/disclosures.html", rows=rows, users=users, today=clock.today())


@bp.get("/disclosures/<int:disclosure_id>")
@readers
def disclosure_draft(disclosure_id: int):
    """Review a disclosure (draft or approved) as the public will see it."""
    session = db_session()
    d = session.get(Disclosure, disclosure_id) or abort(404)
    return render_template(
        "coop/disclosure.html",
        d=d,
        c=d.content,
        staff_view=True,
        steps=_disclosure_steps(session, d),
        unreviewed=review_svc.unreviewed_count(session, d.start, d.end),
        **_anchor_ctx(session, d),
    )


def _disclosure_steps(session, d: Disclosure) -> list[tuple[str, str, dt.datetime | None]]:
    """Drafted, signed off (民主理财小组), approved: (step, who, when) for the notice."""
    ids = [i for i in (d.created_by, d.signed_off_by, d.approved_by) if i]
    users = {u.id: u for u in session.scalars(select(User).where(User.id.in_(ids)))}

    def name(user_id: int | None) -> str:
        user = users.get(user_id) if user_id else None
        return (user.display_name or user.username) if user else "—"

    return [
        (_("Drafted by"), name(d.created_by), d.created_at),
        (_("Signed off by the oversight group (民主理财小组)"), name(d.signed_off_by), d.signed_off_at),
        (_("Approved by"), name(d.approved_by), d.approved_at),
    ]


def _anchor_ctx(session, d: Disclosure) -> dict:
    """What the check-code section shows: the anchor ``flask coop verify`` checks, and whom to ask."""
    return {"anchor": chain.anchor_for(session, d), "contact": books_settings.get(session).contact}


@bp.get("/audit")
@readers
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
    """Public disclosure (财务公开): published statements (and withdrawn ones, marked), no login needed."""
    return render_template(
        "coop/disclosure_index.html", rows=disclosure_svc.published(db_session(), withdrawn=True)
    )


@public_bp.get("/disclosure/<int:disclosure_id>")
def disclosure_detail(disclosure_id: int):
    """One published statement, read-only, with the anchor (check code) it was published with."""
    session = db_session()
    d = session.get(Disclosure, disclosure_id)
    if d is None or d.status not in ("approved", "withdrawn"):
        abort(404)
    return render_template(
        "coop/disclosure.html",
        d=d,
        c=d.content,
        staff_view=False,
        steps=_disclosure_steps(session, d),
        **_anchor_ctx(session, d),
    )
