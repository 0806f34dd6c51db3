"""CLI: ``flask coop ...`` (load-chart, verify, anchor, adopt-untracked, export-beancount, close-period,
reopen-period, correct, recurring, year-end).

Thin: parse, call a service in ``coop/``, and let ``core.cli.transaction`` commit (or roll
back and print why).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import click
from flask.cli import AppGroup

from core import clock, parse
from core.cli import transaction
from core.errors import DomainError

coop_cli = AppGroup("coop", help="The village books: verify, export, close periods, recurring entries.")


@coop_cli.command("load-chart")
def load_chart_cmd() -> None:
    """Load the official chart of accounts (财会〔2023〕14号) from coop/data; idempotent."""
    from coop.ledger import load_chart

    with transaction() as session:
        added = load_chart(session)
    click.echo(f"{added} account(s) added")


@coop_cli.command("verify")
@click.option("--no-balances", is_flag=True, help="Check only the hash chain, not the per-period balances.")
@click.option(
    "--anchor",
    "anchor_values",
    multiple=True,
    metavar="TY-SEQ-HASH",
    help="An anchor kept outside the database (repeatable): fail if the chain no longer holds it.",
)
@click.option(
    "--anchors",
    "anchors_file",
    type=click.File("r", encoding="utf-8"),
    default=None,
    help="A file of anchors, one per line (the first word of each line; # starts a comment).",
)
def verify(no_balances: bool, anchor_values: tuple[str, ...], anchors_file) -> None:
    """Recompute the hash chain and compare every covered row with it; exit 1 naming what is wrong."""
    from coop.chain import parse_anchor, read_anchors
    from coop.verify import verify_books

    anchors = list(anchor_values) + (read_anchors(anchors_file) if anchors_file else [])
    for value in anchors:
        try:
            parse_anchor(value)
        except DomainError as exc:
            raise click.BadParameter(str(exc), param_hint="--anchor") from exc
    with transaction() as session:
        result = verify_books(session, check_balances=not no_balances, anchors=anchors)
    if not result.ok:
        click.echo(
            f"FAILED after {result.vouchers} good voucher(s), {result.records} record(s): {result.problem}",
            err=True,
        )
        for problem in result.problems[1:20]:
            click.echo(f"  also: {problem}", err=True)
        if len(result.problems) > 20:
            click.echo(f"  ... and {len(result.problems) - 20} more", err=True)
        raise SystemExit(1)
    seq, head = result.head
    click.echo(f"OK: {result.vouchers} voucher(s), {result.records} record(s), chain head {seq} {head}")
    for title, anchor in result.published:
        click.echo(f"  published {title}: {anchor.short}")
    if anchors:
        click.echo(f"  {len(anchors)} anchor(s) held")


@coop_cli.command("anchor")
def anchor_cmd() -> None:
    """Print the chain head as an anchor to copy and keep outside the database."""
    from coop.chain import current_anchor

    with transaction() as session:
        anchor = current_anchor(session)
    click.echo(anchor.short)
    click.echo(f"position {anchor.seq}")
    click.echo(f"hash     {anchor.hash}")
    click.echo(f"at       {anchor.at.isoformat() if anchor.at else '-'}")


@coop_cli.command("adopt-untracked")
def adopt_untracked_cmd() -> None:
    """Record in the chain the rows of books kept before the chain covered them (once, on upgrade)."""
    from coop.chain import adopt_untracked

    with transaction() as session:
        count = adopt_untracked(session)
    click.echo(f"{count} row(s) recorded in the chain")


@coop_cli.command("export-beancount")
@click.argument("path", type=click.Path(dir_okay=False, writable=True))
@click.option("--force", is_flag=True, help="Write even though the chain does not verify (with a warning).")
def export_beancount(path: str, force: bool) -> None:
    """Write the whole ledger as a Beancount file (check it with bean-check); refused if the chain
    does not verify, unless --force."""
    from coop.export import write_beancount
    from coop.verify import verify_books

    with transaction() as session:
        result = verify_books(session)
        if not result.ok and not force:
            click.echo(f"refused: the books do not verify: {result.problem}", err=True)
            click.echo("(run `flask coop verify` for details; --force writes the file anyway)", err=True)
            raise SystemExit(1)
        with open(path, "w", encoding="utf-8") as fh:
            counts = write_beancount(session, fh)
    if not result.ok:
        click.echo("WARNING: THE BOOKS DO NOT VERIFY; THIS EXPORT MAY HOLD TAMPERED FIGURES.", err=True)
        click.echo(f"WARNING: {result.problem}", err=True)
    click.echo(f"wrote {counts['vouchers']} voucher(s), {counts['lines']} line(s) to {path}")


def _parse_month(text: str) -> tuple[int, int]:
    try:
        return parse.month(text)
    except parse.InputError as exc:
        raise click.BadParameter(str(exc)) from exc


@coop_cli.command("settings")
@click.option("--name", default=None, help="The organisation's name (编制单位).")
@click.option("--opening", default=None, help="Opening date (建账日期), YYYY-MM-DD.")
@click.option("--reserve", default=None, help="The charter's 公积公益金 rate, percent.")
@click.option("--grace", default=None, type=int, help="Days ahead a voucher may be dated (0-31).")
@click.option("--contact", default=None, help="Whom villagers ask to have the books checked.")
@click.option("--user", "username", default=None, help="The administrator changing them (needed to change).")
def settings_cmd(
    name: str | None,
    opening: str | None,
    reserve: str | None,
    grace: int | None,
    contact: str | None,
    username: str | None,
) -> None:
    """Show the books' settings, or (with --user ADMIN) change them."""
    from coop import settings
    from core import auth

    changes: dict = {
        k: v
        for k, v in {
            "name": name,
            "reserve_percent": reserve,
            "future_grace_days": grace,
            "contact": contact,
        }.items()
        if v is not None
    }
    if opening is not None:
        changes["opening_date"] = _parse_date(opening, "--opening")
    with transaction() as session:
        if changes:
            user = auth.get_user(session, username) if username else None
            if user is None:
                raise click.UsageError("changing the settings needs --user ADMIN")
            settings.update(session, user_id=user.id, **changes)
        row = settings.get(session)
        shown = [
            ("name", row.name),
            ("opening date", row.opening_date.isoformat()),
            ("reserve percent", row.reserve_percent),
            ("grace days", row.future_grace_days),
            ("contact", row.contact),
        ]
    for key, value in shown:
        click.echo(f"{key:16} {value}")


def _parse_date(text: str, hint: str) -> dt.date:
    try:
        return parse.date_field(text)
    except parse.InputError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from exc


@coop_cli.command("close-period")
@click.argument("month", metavar="YYYY-MM")
@click.option("--user", "username", required=True, help="The official closing it (recorded as closed_by).")
def close_period_cmd(month: str, username: str) -> None:
    """Close a month: nothing can be posted into it afterwards (December closes with the year-end)."""
    from coop.periods import close_period
    from core import auth

    year, m = _parse_month(month)
    with transaction() as session:
        user = auth.get_user(session, username)
        if user is None:
            raise click.ClickException(f"no user {username!r}")
        close_period(session, year, m, user_id=user.id)
    click.echo(f"closed {year}-{m:02d}")


@coop_cli.command("reopen-period")
@click.argument("month", metavar="YYYY-MM")
@click.option("--reason", required=True, help="Why the month is reopened (recorded in the audit log).")
@click.option("--user", "username", required=True, help="The administrator reopening it.")
def reopen_period_cmd(month: str, reason: str, username: str) -> None:
    """Reopen the latest closed month (administrators only); withdraws disclosures covering it."""
    from coop.disclosure import published
    from coop.periods import reopen_period
    from core import auth

    year, m = _parse_month(month)
    with transaction() as session:
        user = auth.get_user(session, username)
        if user is None:
            raise click.ClickException(f"no user {username!r}")
        before = {d.id for d in published(session)}
        reopen_period(session, year, m, reason=reason, user_id=user.id)
        withdrawn = [
            d.title for d in published(session, withdrawn=True) if d.id in before and d.status == "withdrawn"
        ]
    click.echo(f"reopened {year}-{m:02d}")
    for title in withdrawn:
        click.echo(f"withdrew {title}")


@coop_cli.command("correct")
@click.argument("year", type=int)
@click.option("--account", required=True, help="The account the correction affects (e.g. 101, 11301).")
@click.option(
    "--gain", "gain", default=None, help="Yuan: the closed year's surplus was understated (debits ACCOUNT)."
)
@click.option(
    "--loss", "loss", default=None, help="Yuan: the closed year's surplus was overstated (credits ACCOUNT)."
)
@click.option("--summary", required=True, help="What is corrected (摘要).")
@click.option("--date", "day", default=None, help="Voucher date in an open period (default: today).")
@click.option("--user", "username", required=True, help="The official preparing it (制单).")
def correct(
    year: int, account: str, gain: str | None, loss: str | None, summary: str, day: str | None, username: str
) -> None:
    """Prepare a correction to the closed YEAR (322 以前年度损益调整 into 未分配收益) as a draft;
    another official reviews and posts it (the books' Review page)."""
    from coop.ledger import Line
    from coop.review import prepare
    from core import auth
    from core.money import parse_yuan

    if (gain is None) == (loss is None):
        raise click.UsageError("give exactly one of --gain or --loss")
    try:
        amount = parse_yuan(gain if gain is not None else loss or "")
        when = dt.date.fromisoformat(day) if day else clock.today()
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    line = Line(account, debit=amount) if gain is not None else Line(account, credit=amount)
    with transaction() as session:
        user = auth.get_user(session, username)
        if user is None:
            raise click.ClickException(f"no user {username!r}")
        draft = prepare(
            session, date=when, summary=summary, lines=[line], preparer_id=user.id, correction_year=year
        )
        draft_id = draft.id
    click.echo(f"prepared correction draft #{draft_id}: another official reviews and posts it (Review page)")


@coop_cli.command("recurring")
@click.option("--until", "until", default=None, help="Post occurrences up to this date (default: today).")
def recurring(until: str | None) -> None:
    """Post the due recurring entries (contract fees, leases); safe to run daily."""
    from coop.recurring import run_recurring

    try:
        day = dt.date.fromisoformat(until) if until else clock.today()
    except ValueError as exc:
        raise click.BadParameter("use YYYY-MM-DD", param_hint="--until") from exc
    skipped: list = []
    with transaction() as session:
        posted = run_recurring(session, day, skipped=skipped)
        lines = [f"posted {v.label} {v.date} {v.summary}" for v in posted]
    for line in lines:
        click.echo(line)
    for s in skipped:
        click.echo(f"skipped {s.entry} {s.date}: {s.why}")
    click.echo(f"{len(posted)} voucher(s) posted" + (f", {len(skipped)} skipped" if skipped else ""))


@coop_cli.command("year-end")
@click.argument("year", type=int)
@click.option(
    "--payout",
    "payout_percent",
    default="100",
    show_default=True,
    help="成员分配: percent of what remains after the reserve and outside investors' profit.",
)
@click.option(
    "--members", "members_amount", default=None, help="成员分配 as an amount in yuan (instead of --payout)."
)
@click.option("--outside", "outside_investors", default=None, help="外来投资分利 in yuan (credited to 211).")
@click.option("--other", "other", default=None, help="Other appropriation in yuan (needs --other-note).")
@click.option("--other-note", default="", help="What the other appropriation is for.")
@click.option("--other-account", default=None, help="Account credited with the other appropriation.")
@click.option("--post", "do_post", is_flag=True, help="Post the plan (default: preview only).")
def year_end(
    year: int,
    payout_percent: str,
    members_amount: str | None,
    outside_investors: str | None,
    other: str | None,
    other_note: str,
    other_account: str | None,
    do_post: bool,
) -> None:
    """Preview (or with --post, post) the year-end closing and distribution.

    The reserve (公积公益金) rate is the charter's, from the books' settings. Posting is refused
    until December of YEAR has ended in the configured time zone.
    """
    from coop.distribution import post_distribution, preview
    from core.money import format_fen, parse_yuan

    with transaction() as session:
        options: dict[str, Any] = {
            "payout_percent": payout_percent,
            "members_amount": parse_yuan(members_amount) if members_amount else None,
            "outside_investors": parse_yuan(outside_investors) if outside_investors else 0,
            "other": parse_yuan(other) if other else 0,
            "other_note": other_note,
            "other_account": other_account,
        }
        plan = preview(session, year, **options)
        click.echo(
            f"surplus {format_fen(plan.surplus)}, prior {format_fen(plan.prior_undistributed)}, "
            f"distributable {format_fen(plan.distributable)}, "
            f"reserve {format_fen(plan.reserve)} ({plan.reserve_percent}%, charter), "
            f"outside investors {format_fen(plan.outside_investors)}, "
            f"households {format_fen(plan.to_households)}, other {format_fen(plan.other)}, "
            f"retained {format_fen(plan.retained)}"
        )
        for hid, amount in plan.parts.items():
            click.echo(f"  {plan.names[hid]:20} {plan.shares[hid]:>5} shares {format_fen(amount):>14}")
        if do_post:
            post_distribution(session, year, **options)
    if do_post:
        click.echo("posted")
