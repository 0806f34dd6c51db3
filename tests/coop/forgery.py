"""What a database owner who has read the source can do: rewrite rows with SQL, then bring the chain in
line with them, either by appending records that imitate the application's own or by rewriting the
chain's history and recomputing every hash from the start. Raw SQL only (no ORM events fire)."""

from __future__ import annotations

from types import SimpleNamespace

from sqlalchemy import select, text

from coop.chain import (
    COVERED_TABLES,
    GENESIS_HASH,
    canonical,
    chain_hash,
    payload_of,
    record_content,
)
from core import clock


def sql(session, statement: str, **params) -> None:
    """Tamper: one SQL statement, committed at once, outside the ORM."""
    session.connection().execute(text(statement), params)
    session.commit()
    session.expire_all()


def _entries(conn) -> list[SimpleNamespace]:
    codes = dict(conn.execute(text("SELECT id, code FROM coop_accounts")).all())
    out = []
    for v in conn.execute(text("SELECT * FROM coop_vouchers")).mappings():
        lines = conn.execute(
            text(
                "SELECT account_id, debit, credit, memo FROM coop_voucher_lines WHERE voucher_id = :v "
                "ORDER BY line_no"
            ),
            {"v": v["id"]},
        ).all()
        out.append(SimpleNamespace(kind_="voucher", **v, lines=[(codes[a], d, c, m) for a, d, c, m in lines]))
    for r in conn.execute(text("SELECT * FROM coop_chain_records")).mappings():
        out.append(SimpleNamespace(kind_="record", **r))
    return sorted(out, key=lambda e: e.seq)


def _differences(conn, entries) -> list[tuple[str, int, str, str]]:
    latest = {(e.table_name, e.row_id): e for e in entries if e.kind_ == "record"}
    out = []
    for name, table in COVERED_TABLES.items():
        present = set()
        for row in conn.execute(select(*table.c)).mappings():
            present.add(row["id"])
            rec = latest.get((name, row["id"]))
            payload = payload_of(row)
            if rec is None or rec.op == "delete":
                out.append((name, row["id"], "insert", payload))
            elif rec.payload != payload:
                out.append((name, row["id"], "update", payload))
        for (t, row_id), rec in latest.items():
            if t == name and row_id not in present and rec.op != "delete":
                out.append((name, row_id, "delete", "null"))
    return out


def _write(session, entries) -> None:
    """Renumber 1..N, recompute every hash from genesis, write back, move the head."""
    conn = session.connection()
    conn.execute(text("UPDATE coop_vouchers SET seq = -seq"))
    conn.execute(text("UPDATE coop_chain_records SET seq = -seq - 1000000"))
    prev = GENESIS_HASH
    for seq, e in enumerate(entries, 1):
        e.seq = seq
        if e.kind_ == "voucher":
            h = chain_hash(prev, canonical(SimpleNamespace(**{**vars(e), **_voucher_aliases(e)}), e.lines))
            conn.execute(
                text("UPDATE coop_vouchers SET seq = :s, prev_hash = :p, hash = :h WHERE id = :i"),
                {"s": seq, "p": prev, "h": h, "i": e.id},
            )
        else:
            h = chain_hash(prev, record_content(seq, e.table_name, e.row_id, e.op, e.at, e.payload))
            if getattr(e, "id", None) is None:
                conn.execute(
                    text(
                        "INSERT INTO coop_chain_records (seq, table_name, row_id, op, payload, prev_hash, "
                        "hash, at) VALUES (:s, :t, :r, :o, :d, :p, :h, :a)"
                    ),
                    {
                        "s": seq,
                        "t": e.table_name,
                        "r": e.row_id,
                        "o": e.op,
                        "d": e.payload,
                        "p": prev,
                        "h": h,
                        "a": e.at.replace(tzinfo=None),
                    },
                )
            else:
                conn.execute(
                    text(
                        "UPDATE coop_chain_records SET seq = :s, payload = :d, op = :o, prev_hash = :p, "
                        "hash = :h WHERE id = :i"
                    ),
                    {"s": seq, "d": e.payload, "o": e.op, "p": prev, "h": h, "i": e.id},
                )
        prev = h
    conn.execute(text("UPDATE coop_chain_head SET seq = :s, hash = :h"), {"s": len(entries), "h": prev})
    session.commit()
    session.expire_all()


def _voucher_aliases(e) -> dict:
    import datetime as dt

    day = e.date if isinstance(e.date, dt.date) else dt.date.fromisoformat(str(e.date))
    return {"date": day}


def _at(e) -> None:
    import datetime as dt

    if isinstance(e.at, str):
        e.at = dt.datetime.fromisoformat(e.at)
    if e.at.tzinfo is None:
        e.at = e.at.replace(tzinfo=dt.UTC)


def _load(session):
    conn = session.connection()
    entries = _entries(conn)
    for e in entries:
        if e.kind_ == "record":
            _at(e)
    return conn, entries


def append_records(session) -> int:
    """Imitate the application: append a record for every row that differs from the chain."""
    conn, entries = _load(session)
    diffs = _differences(conn, entries)
    now = clock.now()
    for name, row_id, op, payload in diffs:
        entries.append(
            SimpleNamespace(
                kind_="record", id=None, seq=0, table_name=name, row_id=row_id, op=op, payload=payload, at=now
            )
        )
    _write(session, entries)
    return len(diffs)


def rewrite_history(session) -> int:
    """Make the present state look original: every record of a row is overwritten with the row's
    current content (updates that then change nothing are dropped), an inserted row gets a record
    early in the chain, a deleted row's records vanish; then the whole chain is recomputed from the
    start. Returns how many rows differed from the chain."""
    conn, entries = _load(session)
    diffs = _differences(conn, entries)
    current = {}
    for name, table in COVERED_TABLES.items():
        for row in conn.execute(select(*table.c)).mappings():
            current[(name, row["id"])] = payload_of(row)
    first = next(e for e in entries if e.kind_ == "record")
    recorded = set()
    for e in list(entries):
        if e.kind_ != "record":
            continue
        key = (e.table_name, e.row_id)
        if key not in current:
            entries.remove(e)
            conn.execute(text("DELETE FROM coop_chain_records WHERE id = :i"), {"i": e.id})
        elif e.op != "delete":
            e.payload = current[key]
            recorded.add(key)
    for name, row_id in sorted(set(current) - recorded):
        forged = SimpleNamespace(
            kind_="record",
            id=None,
            seq=0,
            table_name=name,
            row_id=row_id,
            op="insert",
            payload=current[(name, row_id)],
            at=first.at,
        )
        entries.insert(entries.index(first) + 1, forged)
    last: dict[tuple[str, int], str] = {}
    for e in list(entries):  # updates that now change nothing would give the game away: drop them
        if e.kind_ != "record":
            continue
        key = (e.table_name, e.row_id)
        if e.op == "update" and last.get(key) == e.payload:
            entries.remove(e)
            if e.id is not None:
                conn.execute(text("DELETE FROM coop_chain_records WHERE id = :i"), {"i": e.id})
        last[key] = e.payload
    _write(session, entries)
    return len(diffs)


def rebuild_balances(session) -> None:
    """Recompute coop_balances and the vouchers' totals from the lines (a forger who added or
    changed lines does this)."""
    conn = session.connection()
    conn.execute(
        text(
            "UPDATE coop_vouchers SET total = (SELECT COALESCE(SUM(debit), 0) FROM coop_voucher_lines "
            "WHERE voucher_id = coop_vouchers.id)"
        )
    )
    sums: dict[tuple[int, int, bool], list[int]] = {}
    rows = conn.execute(
        text(
            "SELECT l.account_id, v.date, v.kind, l.debit, l.credit FROM coop_voucher_lines l "
            "JOIN coop_vouchers v ON v.id = l.voucher_id"
        )
    )
    for account_id, day, kind, debit, credit in rows:
        day = str(day)
        key = (account_id, int(day[:4]) * 100 + int(day[5:7]), kind == "closing")
        acc = sums.setdefault(key, [0, 0])
        acc[0] += debit
        acc[1] += credit
    conn.execute(text("DELETE FROM coop_balances"))
    for (account_id, period, closing), (debit, credit) in sums.items():
        conn.execute(
            text(
                "INSERT INTO coop_balances (account_id, period, closing, debit, credit) "
                "VALUES (:a, :p, :c, :d, :cr)"
            ),
            {"a": account_id, "p": period, "c": closing, "d": debit, "cr": credit},
        )
    session.commit()


def forge_voucher(
    session, *, day: str, debit: str, credit: str, amount: int, summary: str = "forged"
) -> None:
    """Append a voucher with SQL, with its number, hash, head and balances computed as posting would."""
    conn = session.connection()
    seq, prev = conn.execute(text("SELECT seq, hash FROM coop_chain_head")).one()
    year = int(day[:4])
    number = (
        conn.execute(text("SELECT MAX(number) FROM coop_vouchers WHERE year = :y"), {"y": year}).scalar() or 0
    ) + 1
    import datetime as dt

    v = SimpleNamespace(
        seq=seq + 1,
        year=year,
        number=number,
        date=dt.date.fromisoformat(day),
        summary=summary,
        attachments=0,
        kind="normal",
        preparer_id=None,
        approver_id=None,
        source=None,
        source_ref=None,
        reverses_id=None,
    )
    h = chain_hash(prev, canonical(v, [(debit, amount, 0, ""), (credit, 0, amount, "")]))
    conn.execute(
        text(
            "INSERT INTO coop_vouchers (seq, year, number, date, summary, attachments, kind, total, "
            "prev_hash, hash, posted_at) VALUES (:s, :y, :n, :d, :m, 0, 'normal', :t, :p, :h, :a)"
        ),
        {
            "s": v.seq,
            "y": year,
            "n": number,
            "d": day,
            "m": summary,
            "t": amount,
            "p": prev,
            "h": h,
            "a": clock.now().replace(tzinfo=None),
        },
    )
    vid = conn.execute(text("SELECT id FROM coop_vouchers WHERE seq = :s"), {"s": v.seq}).scalar()
    for no, (code, d, c) in enumerate([(debit, amount, 0), (credit, 0, amount)], 1):
        acc = conn.execute(text("SELECT id FROM coop_accounts WHERE code = :c"), {"c": code}).scalar()
        conn.execute(
            text(
                "INSERT INTO coop_voucher_lines (voucher_id, line_no, account_id, debit, credit, memo) "
                "VALUES (:v, :n, :a, :d, :c, '')"
            ),
            {"v": vid, "n": no, "a": acc, "d": d, "c": c},
        )
    conn.execute(text("UPDATE coop_chain_head SET seq = :s, hash = :h"), {"s": v.seq, "h": h})
    session.commit()
    rebuild_balances(session)
