"""The hash chain: one sequence of positions for the vouchers and for every change to the rows a
published figure depends on, anchors that hold it from outside the database, and its verification.

- Vouchers are hashed by ``coop.ledger.post_voucher`` (``canonical`` below) and take the next
  position under ``lock_head``.
- Every insert, update or delete of a row of a covered table (``COVERED``: the chart of accounts,
  periods, distribution plans, households, the share register, member accounts, transaction
  volumes, the books' settings and disclosures) appends a ``ChainRecord`` holding the row's
  columns as stored, taking the next position under the same lock. This happens in SQLAlchemy
  session events registered here on ``Session`` (``after_flush`` collects the covered objects,
  ``after_flush_postexec`` appends their records, which the next flush — commit's flush loop —
  writes; ORM bulk ``update()``/``delete()`` statements are caught in ``do_orm_execute``), so no
  service has to remember it and new columns are covered without changes here.
- ``verify_chain`` walks vouchers and records in position order, checks every hash and link,
  compares each covered row with its latest record, checks that no voucher was posted into a
  month that was closed at its position, and checks the anchors given to it.

Anchors (``TY-<position>-<first 16 hex of the hash>``) are copies of a head kept outside the
database: printed on each published disclosure, or noted from ``flask coop anchor``. A forger who
recomputes the whole chain cannot reproduce them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, event, func, insert, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, object_mapper

from coop.models import (
    Account,
    Balance,
    BooksSettings,
    ChainHead,
    ChainRecord,
    Disclosure,
    Distribution,
    Household,
    MemberAccount,
    Period,
    ShareEvent,
    StatementNote,
    TransactionVolume,
    Voucher,
    VoucherLine,
    VoucherReview,
)
from core import audit, clock
from core.errors import N_, DomainError

GENESIS_HASH = "0" * 64
# Everything a published figure depends on, besides the vouchers themselves.
COVERED: tuple[type, ...] = (
    Account,
    Period,
    Distribution,
    Household,
    ShareEvent,
    MemberAccount,
    TransactionVolume,
    BooksSettings,
    Disclosure,
    StatementNote,
    VoucherReview,
)
COVERED_TABLES: dict[str, Table] = {cls.__table__.name: cls.__table__ for cls in COVERED}  # type: ignore[attr-defined]
_PENDING = "coop.chain.pending"
ANCHOR_RE = re.compile(r"^(?:TY-)?(\d{1,12})[-: ]([0-9a-f]{16,64})$", re.IGNORECASE)


class ChainError(DomainError):
    """A chain operation was refused (no chain head, an anchor that is not one, adopting twice)."""


# ---------------------------------------------------------------- hashing


def canonical(voucher: Any, lines: list[tuple[str, int, int, str]]) -> str:
    """A voucher's content as canonical JSON: what its hash covers.

    ``voucher`` is anything with the voucher's attributes (a ``Voucher`` or a result row).
    """
    payload = {
        "seq": voucher.seq,
        "year": voucher.year,
        "number": voucher.number,
        "date": voucher.date.isoformat(),
        "summary": voucher.summary,
        "attachments": voucher.attachments,
        "kind": voucher.kind,
        "preparer": voucher.preparer_id,
        "approver": voucher.approver_id,
        "source": voucher.source,
        "source_ref": voucher.source_ref,
        "reverses": voucher.reverses_id,
        "lines": [list(line) for line in lines],
    }
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def chain_hash(prev_hash: str, content: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{content}".encode()).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def payload_of(row: Any) -> str:
    """Canonical JSON of a row as read from the database (a mapping of column name to value)."""
    return json.dumps(
        {k: _plain(v) for k, v in row.items()}, ensure_ascii=False, sort_keys=True, separators=(",", ":")
    )


def record_content(seq: int, table: str, row_id: int, op: str, at: dt.datetime, payload: str) -> str:
    """What a chain record's hash covers."""
    return json.dumps(
        {"seq": seq, "table": table, "row": row_id, "op": op, "at": _plain(at), "data": payload},
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
    )


# ---------------------------------------------------------------- the head


def chain_head(session: Session) -> tuple[int, str]:
    """(position, hash) of the chain's last entry; (0, zeros) for empty books."""
    head = session.get(ChainHead, 1)
    return (head.seq, head.hash) if head is not None else (0, GENESIS_HASH)


class BooksBusy(ChainError):
    """Another posting held the books for too long, or this transaction read them before it asked to
    write; nothing was written and submitting again succeeds."""


def lock_head(session: Session) -> ChainHead:
    """Lock and return the chain head row: everything that extends the chain takes it first, so
    chain positions and voucher numbers are assigned one writer at a time.

    PostgreSQL: ``SELECT … FOR UPDATE`` on the row; a second poster waits until the first commits,
    and its later reads (READ COMMITTED) see the first's voucher. SQLite: pysqlite opens its
    transaction only at the first write, so a ``SELECT … FOR UPDATE`` (which SQLite ignores) would
    leave the reads of the head and of the year's last number outside any lock. A no-op UPDATE of
    the head row comes first instead: it takes the database's write lock (waiting, up to the busy
    timeout, for another writer to commit) before anything for the numbering is read, and holds it
    to the commit. If this transaction had read before (its snapshot may be older than the last
    commit), SQLite refuses at once; that and a timeout become ``BooksBusy``, never a 500.

    The row is re-read under the lock unless this transaction already changed it (then it holds
    the lock and its own value is the current one), so a head read earlier in the transaction is
    never extended from a stale position.
    """
    if session.get_bind().dialect.name == "sqlite":
        try:  # Core on the connection: no autoflush, so it is safe inside flush events too
            session.connection().execute(
                update(ChainHead)
                .where(ChainHead.id == 1)
                .values(seq=ChainHead.seq)
                .execution_options(synchronize_session=False)
            )
        except OperationalError as exc:
            if "locked" not in str(exc.orig) and "busy" not in str(exc.orig):
                raise
            raise BooksBusy(
                N_("the books are busy with another posting: nothing was saved, please try again")
            ) from exc
    stmt = select(ChainHead).where(ChainHead.id == 1).with_for_update()
    known = session.identity_map.get(session.identity_key(ChainHead, 1))
    if known is None or not session.is_modified(known):
        stmt = stmt.execution_options(populate_existing=True)
    head = session.scalar(stmt)
    if head is None:  # validate_voucher loads the chart, which starts the chain
        raise ChainError(N_("the books have no chain head: load the chart of accounts"))
    return head


def _head_for_records(session: Session) -> ChainHead:
    if session.get(ChainHead, 1) is None:  # a covered row written before the chart was loaded
        session.connection().execute(insert(ChainHead).values(id=1, seq=0, hash=GENESIS_HASH))
    return lock_head(session)


# ---------------------------------------------------------------- recording changes


def _append(session: Session, items: Iterable[tuple[Table, int, str]]) -> list[ChainRecord]:
    """Append one record per (table, row id, operation), reading each row as stored now."""
    seen: dict[tuple[str, int], str] = {}
    order: list[tuple[Table, int]] = []
    for table, row_id, op in items:
        key = (table.name, row_id)
        if key not in seen:
            order.append((table, row_id))
        elif seen[key] == "insert" and op == "update":
            op = "insert"
        seen[key] = op
    if not order:
        return []
    head = _head_for_records(session)
    conn = session.connection()
    now = clock.now()
    out = []
    for table, row_id in order:
        op = seen[(table.name, row_id)]
        payload = "null"
        if op != "delete":
            pk = next(iter(table.primary_key.columns))
            row = conn.execute(select(*table.c).where(pk == row_id)).mappings().first()
            if row is None:
                op = "delete"
            else:
                payload = payload_of(row)
                if op == "update" and payload == _latest_payload(conn, table.name, row_id):
                    continue  # an attribute set to the value it had: nothing changed
        seq = head.seq + 1
        digest = chain_hash(head.hash, record_content(seq, table.name, row_id, op, now, payload))
        rec = ChainRecord(
            seq=seq,
            table_name=table.name,
            row_id=row_id,
            op=op,
            payload=payload,
            prev_hash=head.hash,
            hash=digest,
            at=now,
        )
        session.add(rec)
        head.seq, head.hash = seq, digest
        out.append(rec)
    return out


def _latest_payload(conn: Any, table: str, row_id: int) -> str | None:
    return conn.execute(
        select(ChainRecord.payload)
        .where(ChainRecord.table_name == table, ChainRecord.row_id == row_id)
        .order_by(ChainRecord.seq.desc())
        .limit(1)
    ).scalar()


def _row_key(obj: Any) -> tuple[Table, int]:
    mapper = object_mapper(obj)
    (row_id,) = mapper.primary_key_from_instance(obj)
    return mapper.local_table, row_id  # type: ignore[return-value]


@event.listens_for(Session, "after_flush")
def _collect(session: Session, _flush_context: Any) -> None:
    items: list[tuple[Table, int, str]] = []
    for obj in session.new:
        if isinstance(obj, COVERED):
            items.append((*_row_key(obj), "insert"))
    for obj in session.dirty:
        if isinstance(obj, COVERED) and session.is_modified(obj, include_collections=False):
            items.append((*_row_key(obj), "update"))
    for obj in session.deleted:
        if isinstance(obj, COVERED):
            items.append((*_row_key(obj), "delete"))
    if items:
        session.info.setdefault(_PENDING, []).extend(items)


@event.listens_for(Session, "after_flush_postexec")
def _record(session: Session, _flush_context: Any) -> None:
    items = session.info.pop(_PENDING, None)
    if items:
        _append(session, items)


@event.listens_for(Session, "after_soft_rollback")
def _forget(session: Session, _previous: Any) -> None:
    session.info.pop(_PENDING, None)


@event.listens_for(Session, "do_orm_execute")
def _bulk(state: Any) -> Any:
    """An ORM ``update(Model)``/``delete(Model)`` on a covered table records the rows it touched."""
    if not (state.is_update or state.is_delete) or state.bind_mapper is None:
        return None
    mapper = state.bind_mapper
    if mapper.class_ not in COVERED:
        return None
    table = mapper.local_table
    pk = next(iter(table.primary_key.columns))
    where = state.statement.whereclause
    ids_stmt = select(pk) if where is None else select(pk).where(where)
    ids = list(state.session.execute(ids_stmt).scalars())
    result = state.invoke_statement()
    op = "delete" if state.is_delete else "update"
    _append(state.session, [(table, row_id, op) for row_id in ids])
    return result


# ---------------------------------------------------------------- anchors


@dataclass(frozen=True)
class Anchor:
    """A chain head: a position, its hash and when it was written."""

    seq: int
    hash: str
    at: dt.datetime | None = None

    @property
    def short(self) -> str:
        return f"TY-{self.seq}-{self.hash[:16]}"

    @property
    def full(self) -> str:
        return f"TY-{self.seq}-{self.hash}"

    def __str__(self) -> str:
        return self.short


def parse_anchor(text: str) -> tuple[int, str]:
    """``TY-<position>-<hash or its first 16+ hex digits>`` → (position, lower-case hex prefix)."""
    match = ANCHOR_RE.match((text or "").strip())
    if match is None:
        raise ChainError(
            N_("%(anchor)s is not an anchor: expected TY-<position>-<hash>"), anchor=(text or "").strip()[:80]
        )
    return int(match.group(1)), match.group(2).lower()


def read_anchors(lines: Iterable[str]) -> list[str]:
    """Anchors from a file: the first word of each line; blank lines and ``#`` comments skipped."""
    out = []
    for line in lines:
        line = line.replace("\ufeff", "").strip()  # a byte-order mark (Windows Notepad) is not text
        if line and not line.startswith("#"):
            out.append(line.split()[0])
    return out


def _at_position(session: Session, seq: int) -> dt.datetime | None:
    at = session.scalar(select(ChainRecord.at).where(ChainRecord.seq == seq))
    if at is None:
        at = session.scalar(select(Voucher.posted_at).where(Voucher.seq == seq))
    return at


def current_anchor(session: Session) -> Anchor:
    """The chain head now, as an anchor to copy and keep outside the database."""
    seq, digest = chain_head(session)
    return Anchor(seq, digest, _at_position(session, seq) if seq else None)


def _approval_record(records: Iterable[Any], approved: str = "approved") -> Any | None:
    for rec in records:
        if rec.op != "delete" and json.loads(rec.payload).get("status") == approved:
            return rec
    return None


def anchor_for(session: Session, disclosure: Disclosure) -> Anchor | None:
    """The anchor a published disclosure prints: the chain head right after its approval was
    recorded (that record holds the disclosure's content, so the anchor covers what was published).
    None while the disclosure has not been approved."""
    if disclosure.id is None:
        return None
    records = session.scalars(
        select(ChainRecord)
        .where(ChainRecord.table_name == Disclosure.__tablename__, ChainRecord.row_id == disclosure.id)
        .order_by(ChainRecord.seq)
    )
    rec = _approval_record(records)
    return Anchor(rec.seq, rec.hash, rec.at) if rec is not None else None


# ---------------------------------------------------------------- books from before the chain


def untracked(session: Session) -> list[tuple[str, int]]:
    """Covered rows that have no chain record: (table, row id)."""
    out: list[tuple[str, int]] = []
    for name, table in COVERED_TABLES.items():
        pk = next(iter(table.primary_key.columns))
        tracked = select(ChainRecord.row_id).where(ChainRecord.table_name == name)
        out.extend((name, row_id) for row_id in session.scalars(select(pk).where(pk.not_in(tracked))))
    return out


def adopt_untracked(session: Session, *, user_id: int | None = None) -> int:
    """Append an ``insert`` record for every covered row that has none; returns how many.

    For books created before the chain covered these tables (the migration calls it). Refused
    once the chain holds any record: from then on a row without one was inserted outside the
    application, and adopting it would hide that.
    """
    if session.scalar(select(ChainRecord.id).limit(1)) is not None:
        raise ChainError(
            N_(
                "the chain already records these tables: a row without a record was inserted outside "
                "the application, and adopting it would hide that"
            )
        )
    rows = untracked(session)
    _append(session, [(COVERED_TABLES[name], row_id, "insert") for name, row_id in rows])
    session.flush()
    if rows:
        audit.record(session, "chain.adopt", None, user_id=user_id, details={"rows": len(rows)})
    return len(rows)


# ---------------------------------------------------------------- verification


@dataclass
class VerifyResult:
    ok: bool
    vouchers: int
    problem: str = ""
    voucher_label: str | None = None
    balance_problems: list[str] | None = None
    records: int = 0
    problems: list[str] = field(default_factory=list)
    head: tuple[int, str] = (0, GENESIS_HASH)
    published: list[tuple[str, Anchor]] = field(default_factory=list)
    anchors_checked: int = 0


def _fail(result: VerifyResult, problem: str, label: str | None = None) -> VerifyResult:
    result.ok = False
    result.problems.append(problem)
    if not result.problem:
        result.problem, result.voucher_label = problem, label
    return result


def _diff(stored: str, current: str) -> str:
    old, new = json.loads(stored) or {}, json.loads(current) or {}
    cols = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if not cols:
        return ""
    col = cols[0]
    more = f" (and {', '.join(cols[1:4])})" if len(cols) > 1 else ""
    return f"column {col} is {_short(new.get(col))} but the chain recorded {_short(old.get(col))}{more}"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def verify_chain(
    session: Session, *, check_balances: bool = True, anchors: Iterable[str] = ()
) -> VerifyResult:
    """Recompute the whole chain as stored and compare the books with it; name what is wrong.

    Detects, without an anchor: a voucher whose content, number or link is wrong (altered, deleted,
    inserted or reordered); a record whose hash or link is wrong; a covered row that differs from
    its latest record (edited outside the application), has none (inserted outside) or is gone
    although its latest record is not a delete (deleted outside); a voucher posted into a month
    that was closed at its position; a head that does not match the last entry; with
    ``check_balances`` per-period balances that differ from the lines. With ``anchors`` also that
    the chain still holds each anchor's hash at its position: only this catches a chain
    recomputed from the start.
    """
    wanted: dict[int, list[tuple[str, str]]] = {}
    result = VerifyResult(True, 0)
    for text in anchors:
        seq, prefix = parse_anchor(text)
        wanted.setdefault(seq, []).append((text.strip(), prefix))
        result.anchors_checked += 1

    def anchor_problems(seq: int, digest: str) -> list[str]:
        return [
            f"anchor {text}: the chain no longer has this hash at position {seq} "
            "(the books were rewritten after this anchor was taken)"
            for text, prefix in wanted.get(seq, ())
            if not digest.startswith(prefix)
        ]

    for problem in anchor_problems(0, GENESIS_HASH):
        _fail(result, problem)

    codes = dict(session.execute(select(Account.id, Account.code)).all())
    records = session.execute(
        select(
            ChainRecord.seq,
            ChainRecord.table_name,
            ChainRecord.row_id,
            ChainRecord.op,
            ChainRecord.payload,
            ChainRecord.prev_hash,
            ChainRecord.hash,
            ChainRecord.at,
        ).order_by(ChainRecord.seq)
    ).all()
    stmt = (
        select(
            Voucher.id,
            Voucher.seq,
            Voucher.year,
            Voucher.number,
            Voucher.date,
            Voucher.summary,
            Voucher.attachments,
            Voucher.kind,
            Voucher.preparer_id,
            Voucher.approver_id,
            Voucher.source,
            Voucher.source_ref,
            Voucher.reverses_id,
            Voucher.prev_hash,
            Voucher.hash,
            Voucher.total,
            VoucherLine.account_id,
            VoucherLine.debit,
            VoucherLine.credit,
            VoucherLine.memo,
        )
        .outerjoin(VoucherLine, VoucherLine.voucher_id == Voucher.id)
        .order_by(Voucher.seq, VoucherLine.line_no)
        .execution_options(yield_per=20000)
    )
    prev_hash, expected_seq, count = GENESIS_HASH, 1, 0
    numbers: dict[int, int] = {}
    latest: dict[tuple[str, int], Any] = {}
    history: dict[tuple[str, int], list[Any]] = {}
    closed_now: set[int] = set()  # months closed at the current position (year*100+month)
    period_month: dict[int, int] = {}
    n_records = len(records)
    ri = 0
    period_table = Period.__tablename__
    settings_table = BooksSettings.__tablename__
    opening_now: list[dt.date] = []  # the books' opening date as recorded at the current position

    def take_records(upto: int) -> str | None:
        """Check the records at positions before ``upto``."""
        nonlocal prev_hash, expected_seq, ri
        while ri < n_records and records[ri].seq < upto:
            rec = records[ri]
            where = f"chain record at position {rec.seq} ({rec.table_name} row {rec.row_id}, {rec.op})"
            if rec.seq < expected_seq:
                return f"{where}: position {rec.seq} is taken twice (a row was inserted into the chain)"
            if rec.seq != expected_seq:
                return f"{where}: position {expected_seq} is missing (deleted or moved)"
            if rec.prev_hash != prev_hash:
                return f"{where}: link to the previous position is broken (deleted, inserted or reordered)"
            content = record_content(rec.seq, rec.table_name, rec.row_id, rec.op, rec.at, rec.payload)
            if chain_hash(prev_hash, content) != rec.hash:
                return f"{where}: content does not match its hash (altered in the database)"
            bad = anchor_problems(rec.seq, rec.hash)
            if bad:
                return bad[0]
            key = (rec.table_name, rec.row_id)
            latest[key] = rec
            history.setdefault(key, []).append(rec)
            if rec.table_name == settings_table and rec.op != "delete":
                opened = (json.loads(rec.payload) or {}).get("opening_date")
                if opened:
                    opening_now[:] = [dt.date.fromisoformat(str(opened)[:10])]
            if rec.table_name == period_table:
                old = period_month.pop(rec.row_id, None)
                if old is not None:
                    closed_now.discard(old)
                if rec.op != "delete":
                    data = json.loads(rec.payload)
                    month = int(data["year"]) * 100 + int(data["month"])
                    period_month[rec.row_id] = month
                    if data.get("closed"):
                        closed_now.add(month)
            prev_hash = rec.hash
            expected_seq += 1
            ri += 1
        return None

    def check(row: Any, lines: list[tuple[str, int, int, str]]) -> str | None:
        nonlocal prev_hash, expected_seq
        problem = take_records(row.seq)
        if problem:
            return problem
        label = f"{row.year}-{row.number:04d}"
        if row.seq < expected_seq:
            return f"voucher {label} (chain position {row.seq}): position {row.seq} is taken twice"
        if row.seq != expected_seq:
            return (
                f"voucher {label} (chain position {row.seq}): "
                f"position {expected_seq} is missing (deleted or moved)"
            )
        if numbers.get(row.year, 0) + 1 != row.number:
            missing = f"{row.year}-{numbers.get(row.year, 0) + 1:04d}"
            return f"voucher {label}: number {missing} is missing (deleted or renumbered)"
        if row.prev_hash != prev_hash:
            return (
                f"voucher {label}: link to the previous voucher is broken "
                "(a voucher was deleted, inserted or reordered)"
            )
        if chain_hash(prev_hash, canonical(row, lines)) != row.hash:
            return f"voucher {label}: content does not match its hash (altered in the database)"
        if sum(ln[1] for ln in lines) != sum(ln[2] for ln in lines) or len(lines) < 2:
            return f"voucher {label}: does not balance"
        if row.total != sum(ln[1] for ln in lines):  # reports read the total: it must be the lines'
            return (
                f"voucher {label}: its total {row.total} is not the sum of its debits "
                "(altered in the database)"
            )
        if opening_now and row.date < opening_now[0]:
            return (
                f"voucher {label} (chain position {row.seq}) is dated {row.date.isoformat()}, before the "
                f"books' opening date {opening_now[0].isoformat()}: it was posted outside the application"
            )
        if closed_now and row.date.year * 100 + row.date.month in closed_now:
            return (
                f"voucher {label} (chain position {row.seq}) is dated {row.date.isoformat()}, in a month "
                "that was already closed: it was posted outside the application"
            )
        if wanted:
            bad = anchor_problems(row.seq, row.hash)
            if bad:
                return bad[0]
        prev_hash = row.hash
        expected_seq += 1
        numbers[row.year] = row.number
        return None

    with session.no_autoflush:
        current = None
        lines: list[tuple[str, int, int, str]] = []
        for row in session.connection().execute(stmt):
            if current is None or row.id != current.id:
                if current is not None:
                    found = check(current, lines)
                    if found:
                        result.records = ri
                        return _fail(result, found, f"{current.year}-{current.number:04d}")
                    count += 1
                    result.vouchers = count
                current, lines = row, []
            if row.account_id is not None:
                lines.append(
                    (codes.get(row.account_id, f"#{row.account_id}"), row.debit, row.credit, row.memo)
                )
        if current is not None:
            found = check(current, lines)
            if found:
                result.records = ri
                return _fail(result, found, f"{current.year}-{current.number:04d}")
            count += 1
        result.vouchers = count
        found = take_records(2**62)
        result.records = ri
        if found:
            return _fail(result, found)
        head_seq, head_hash = chain_head(session)
        result.head = (head_seq, head_hash)
        if (head_seq, head_hash) != (expected_seq - 1, prev_hash):
            return _fail(
                result,
                f"chain head (position {head_seq}) does not match the last entry (position "
                f"{expected_seq - 1}): the last voucher(s) or record(s) were deleted or the head was changed",
            )
        for seq in sorted(wanted):
            if seq > head_seq:
                for text, _prefix in wanted[seq]:
                    _fail(
                        result,
                        f"anchor {text}: the chain ends at position {head_seq}; position {seq} is gone",
                    )
        _check_rows(session, latest, result)
        _check_history(history, result)
        _check_published(session, history, result)
    if check_balances:
        result.balance_problems = balance_problems(session)
        if result.balance_problems:
            _fail(
                result,
                "per-period balances do not match the voucher lines: "
                + "; ".join(result.balance_problems[:5]),
            )
    return result


def _check_rows(session: Session, latest: dict[tuple[str, int], Any], result: VerifyResult) -> None:
    """Every covered row against its latest record."""
    conn = session.connection()
    for name, table in COVERED_TABLES.items():
        pk = next(iter(table.primary_key.columns))
        present = set()
        for row in conn.execute(select(*table.c).order_by(pk)).mappings():
            row_id = row[pk.name]
            present.add(row_id)
            rec = latest.get((name, row_id))
            if rec is None:
                _fail(result, f"{name} row {row_id}: not in the chain (inserted outside the application)")
            elif rec.op == "delete":
                _fail(
                    result,
                    f"{name} row {row_id}: the chain recorded its deletion at position {rec.seq}, but it "
                    "exists (inserted outside the application)",
                )
            else:
                current = payload_of(row)
                if current != rec.payload:
                    what = _diff(rec.payload, current) or "its content differs from the chain"
                    _fail(
                        result,
                        f"{name} row {row_id}: {what} at position {rec.seq} (edited outside the application)",
                    )
        for (table_name, row_id), rec in sorted(latest.items()):
            if table_name == name and rec.op != "delete" and row_id not in present:
                _fail(
                    result,
                    f"{name} row {row_id}: gone, but the chain's latest record of it (position "
                    f"{rec.seq}) is not a deletion (deleted outside the application)",
                )


# What the application never does to a row once it exists; a record of it was not written by the
# application (a forger appending records that imitate its own).
# The columns of these rows that never change, and the rows are never deleted: corrections are new rows.
APPEND_ONLY = {
    "coop_share_events": ("household_id", "on", "change", "kind", "counterparty_id"),
    "coop_distributions": ("year", "plan"),
}
ACCOUNT_FROZEN = ("code", "name", "parent_id", "key")
FROZEN_AFTER_APPROVAL = (
    "year",
    "period_kind",
    "period_no",
    "start",
    "end",
    "title",
    "content",
    "created_by",
    "signed_off_by",
    "signed_off_at",
    "approved_by",
    "approved_at",
)
# after its approval a disclosure is approved, or withdrawn when a month it covers is reopened
STATUSES_AFTER_APPROVAL = ("approved", "withdrawn")


def _check_history(history: dict[tuple[str, int], list[Any]], result: VerifyResult) -> None:
    """Changes the chain records but the application never makes."""
    for (name, row_id), recs in sorted(history.items()):
        if name in APPEND_ONLY:
            first = json.loads(recs[0].payload) or {}
            for rec in recs[1:]:
                data = json.loads(rec.payload) if rec.op != "delete" else None
                changed = (
                    ["deleted"]
                    if data is None
                    else [k for k in APPEND_ONLY[name] if data.get(k) != first.get(k)]
                )
                if changed:
                    _fail(
                        result,
                        f"{name} row {row_id}: {', '.join(changed)} changed at position {rec.seq}, but these "
                        "rows are never changed or deleted once written (a correction is a new row): changed "
                        "outside the application",
                    )
        elif name == Account.__tablename__:
            kinds = [(rec.seq, json.loads(rec.payload).get("kind")) for rec in recs if rec.op != "delete"]
            for (_seq, first), (seq, kind) in zip(kinds, kinds[1:], strict=False):
                if kind != first:
                    _fail(
                        result,
                        f"{name} row {row_id}: its class changed from {first} to {kind} at position "
                        f"{seq}; an account's class never changes: changed outside the application",
                    )
                    break
            # codes are inside every voucher's hash and parents decide what a statement line sums:
            # the application never renames, renumbers or moves an account
            states = [(rec.seq, json.loads(rec.payload)) for rec in recs if rec.op != "delete"]
            for (_seq, first), (seq, later) in zip(states, states[1:], strict=False):
                moved = [k for k in ACCOUNT_FROZEN if (first or {}).get(k) != (later or {}).get(k)]
                if moved:
                    _fail(
                        result,
                        f"{name} row {row_id}: {', '.join(moved)} changed at position {seq}; an account is "
                        "never renamed, renumbered or moved: changed outside the application",
                    )
                    break
        elif name == Disclosure.__tablename__:
            approved = _approval_record(recs)
            if approved is None:
                continue
            frozen = json.loads(approved.payload)
            for rec in recs:
                if rec.seq <= approved.seq:
                    continue
                data = json.loads(rec.payload) if rec.op != "delete" else None
                changed = (
                    ["deleted"]
                    if data is None
                    else [k for k in FROZEN_AFTER_APPROVAL if data.get(k) != frozen.get(k)]
                    + (
                        [f"status back to {data.get('status')}"]
                        if data.get("status") not in STATUSES_AFTER_APPROVAL
                        else []
                    )
                )
                if changed:
                    _fail(
                        result,
                        f"{name} row {row_id}: changed after its approval at position {approved.seq} "
                        f"({', '.join(changed)}, position {rec.seq}); a published disclosure never changes: "
                        "changed outside the application",
                    )
                elif (
                    data is not None
                    and data.get("status") == "withdrawn"
                    and not _reopened_within(history, frozen, rec.seq)
                ):
                    _fail(
                        result,
                        f"{name} row {row_id}: withdrawn at position {rec.seq} without any month it covers "
                        "having been reopened: only reopening withdraws a published disclosure: changed "
                        "outside the application",
                    )


def _reopened_within(history: dict[tuple[str, int], list[Any]], disclosure: dict, before: int) -> bool:
    """Whether a month in the disclosure's range was reopened (a period record that opens it, with a
    reason) before chain position ``before``."""
    start, end = str(disclosure.get("start", ""))[:7], str(disclosure.get("end", ""))[:7]
    for (table_name, _row_id), recs in history.items():
        if table_name != Period.__tablename__:
            continue
        for rec in recs:
            if rec.seq >= before or rec.op == "delete":
                continue
            data = json.loads(rec.payload) or {}
            month = f"{int(data.get('year', 0)):04d}-{int(data.get('month', 0)):02d}"
            if not data.get("closed") and data.get("reopen_reason") and start <= month <= end:
                return True
    return False


def _check_published(
    session: Session, history: dict[tuple[str, int], list[Any]], result: VerifyResult
) -> None:
    """Each disclosure approved through the application has its anchor in the chain."""
    name = Disclosure.__tablename__
    titles = dict(session.execute(select(Disclosure.id, Disclosure.title)).all())
    for (table_name, row_id), recs in sorted(history.items()):
        if table_name != name:
            continue
        rec = _approval_record(recs)
        if rec is not None:
            title = json.loads(rec.payload).get("title") or titles.get(row_id) or f"#{row_id}"
            result.published.append((title, Anchor(rec.seq, rec.hash, rec.at)))


def balance_problems(session: Session) -> list[str]:
    """Differences between ``coop_balances`` and the sums of the voucher lines."""
    closing = Voucher.kind == "closing"
    period = func.extract("year", Voucher.date) * 100 + func.extract("month", Voucher.date)
    stmt = (
        select(
            VoucherLine.account_id, period, closing, func.sum(VoucherLine.debit), func.sum(VoucherLine.credit)
        )
        .join(Voucher, Voucher.id == VoucherLine.voucher_id)
        .group_by(VoucherLine.account_id, period, closing)
    )
    from_lines = {(a, int(p), bool(c)): (int(d), int(cr)) for a, p, c, d, cr in session.execute(stmt)}
    stored = {
        (b.account_id, b.period, b.closing): (b.debit, b.credit)
        for b in session.scalars(select(Balance))
        if b.debit or b.credit
    }
    codes = dict(session.execute(select(Account.id, Account.code)).all())
    out = []
    for key in sorted(set(from_lines) | set(stored)):
        if from_lines.get(key, (0, 0)) != stored.get(key, (0, 0)):
            out.append(f"account {codes.get(key[0], key[0])} period {key[1]}")
    return out
