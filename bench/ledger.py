"""Benchmark the village books: build N voucher lines over 10 years set-based, then time the reports
(from the per-period balances), chain verification and the Beancount export.

    .venv/bin/python bench/ledger.py            # 1,000,000 lines
    .venv/bin/python bench/ledger.py --quick    # 100,000 lines, well under a minute
    .venv/bin/python bench/ledger.py --database-url postgresql+psycopg://...   (an empty database)

The last line holds the figures as name=value pairs (milliseconds unless named _s; post_per_s and
post_4proc_per_s are vouchers per second posted through ``coop.ledger.post_voucher``, one voucher
per session and commit as the voucher form does; verify_s is ``verify_chain`` over the whole build).
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, select  # noqa: E402

from app import load_models  # noqa: E402
from core.db import Base, make_engine, make_session_factory  # noqa: E402


class _V:
    """Just the attributes ``coop.ledger.canonical`` reads."""

    __slots__ = (
        "seq",
        "year",
        "number",
        "date",
        "summary",
        "attachments",
        "kind",
        "preparer_id",
        "approver_id",
        "source",
        "source_ref",
        "reverses_id",
    )

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)


def build(session_factory, n_lines: int, years: int, seed: int = 7) -> dict:
    from coop.ledger import canonical, chain_hash, chain_head, ensure_account, load_chart
    from coop.models import Account, Balance, ChainHead, Household, Voucher, VoucherLine

    rng = random.Random(seed)
    with session_factory() as s:
        load_chart(s)
        for i in range(30):
            s.add(Household(code=f"B{i:03d}", head_name=f"户{i}"))
        s.flush()
        households = [ensure_account(s, "113", f"B{i:03d}", key=f"household:{i + 1}") for i in range(30)]
        income = [
            ensure_account(s, "501", n, key=f"enterprise:{n}")
            for n in ("mill", "sales", "mugwort", "land", "pond")
        ]
        expense = [
            ensure_account(s, "511", n, key=f"enterprise:{n}:expense") for n in ("mill", "sales", "mugwort")
        ]
        admin = [ensure_account(s, "513", n, key=f"admin:{n}") for n in ("office", "allowance")]
        s.commit()
        codes = dict(s.execute(select(Account.id, Account.code)).all())
        acc = {a.code: a.id for a in s.scalars(select(Account))}
        # the chart, households and sub-accounts were recorded in the chain (coop.chain): the
        # vouchers take the positions after them
        seq, prev = chain_head(s)
    cash, bank = acc["101"], acc["102"]
    subsidy = acc["503"]
    from core import clock

    first_year = clock.today().year - years
    days = [
        dt.date(first_year, 1, 1) + dt.timedelta(days=i)
        for i in range((dt.date(first_year + years, 1, 1) - dt.date(first_year, 1, 1)).days)
    ]

    vouchers, lines, balances = [], [], {}
    vid, line_id = 0, 0
    numbers: dict[int, int] = {}
    n_vouchers_est = n_lines // 2.5
    day_step = len(days) / n_vouchers_est
    pos = 0.0
    while line_id < n_lines:
        day = days[min(int(pos), len(days) - 1)]
        pos += day_step
        kind = rng.random()
        amount = rng.randrange(100, 5_000_000)
        if kind < 0.4:
            ls = [(cash, amount, 0), (rng.choice(income).id, 0, amount)]
        elif kind < 0.7:
            a1 = rng.randrange(1, amount)
            ls = [(rng.choice(expense).id, amount, 0), (bank, 0, a1), (cash, 0, amount - a1)]
        elif kind < 0.9:
            h1, h2 = rng.sample(households, 2)
            a1 = rng.randrange(1, amount)
            ls = [(rng.choice(admin).id, amount, 0), (h1.id, 0, a1), (h2.id, 0, amount - a1)]
        else:
            ls = [(bank, amount, 0), (subsidy, 0, amount)]
        seq += 1
        vid += 1
        numbers[day.year] = numbers.get(day.year, 0) + 1
        v = _V(
            seq=seq,
            year=day.year,
            number=numbers[day.year],
            date=day,
            summary=f"bench {seq}",
            attachments=1,
            kind="normal",
            preparer_id=None,
            approver_id=None,
            source=None,
            source_ref=None,
            reverses_id=None,
        )
        h = chain_hash(prev, canonical(v, [(codes[a], d, c, "") for a, d, c in ls]))
        vouchers.append(
            {
                "id": vid,
                "seq": seq,
                "year": day.year,
                "number": v.number,
                "date": day,
                "summary": v.summary,
                "attachments": 1,
                "kind": "normal",
                "total": sum(d for _, d, _ in ls),
                "prev_hash": prev,
                "hash": h,
                "posted_at": dt.datetime.now(dt.UTC),
            }
        )
        prev = h
        period = day.year * 100 + day.month
        for no, (a, d, c) in enumerate(ls, 1):
            line_id += 1
            lines.append(
                {
                    "id": line_id,
                    "voucher_id": vid,
                    "line_no": no,
                    "account_id": a,
                    "debit": d,
                    "credit": c,
                    "memo": "",
                }
            )
            b = balances.setdefault((a, period), [0, 0])
            b[0] += d
            b[1] += c
    t = time.perf_counter()
    with session_factory() as s:
        for i in range(0, len(vouchers), 20000):
            s.execute(insert(Voucher.__table__), vouchers[i : i + 20000])
        for i in range(0, len(lines), 50000):
            s.execute(insert(VoucherLine.__table__), lines[i : i + 50000])
        s.execute(
            insert(Balance.__table__),
            [
                {"account_id": a, "period": p, "closing": False, "debit": d, "credit": c}
                for (a, p), (d, c) in balances.items()
            ],
        )
        head = s.get(ChainHead, 1)
        head.seq, head.hash = seq, prev
        s.commit()
    return {
        "vouchers": len(vouchers),
        "lines": len(lines),
        "balance_rows": len(balances),
        "insert_s": time.perf_counter() - t,
        "last_year": first_year + years - 1,
    }


def _post_some(url: str, n: int, tag: str) -> tuple[int, float, float]:
    """Post ``n`` vouchers through ``coop.ledger.post_voucher``, one per session and commit, as the
    voucher form does; returns (failures, start, end) in wall-clock seconds."""
    from coop.ledger import Line, post_voucher
    from core import clock

    engine = make_engine(url)
    factory = make_session_factory(engine)
    failures, day = 0, clock.today()
    with factory() as s:  # connect and warm up before the clock starts
        s.execute(select(1))
    t = time.time()
    for i in range(n):
        try:
            with factory() as s:
                post_voucher(
                    s,
                    date=day,
                    summary=f"bench {tag} {i}",
                    lines=[Line("101", debit=100 + i), Line("50101", credit=100 + i)],
                    source="bench",
                    source_ref=f"{tag}:{i}",
                )
                s.commit()
        except Exception as exc:  # noqa: BLE001 - counted and shown, the run goes on
            failures += 1
            if failures <= 3:
                print(f"  posting failed: {type(exc).__name__}: {str(exc)[:200]}", file=sys.stderr)
    end = time.time()
    engine.dispose()
    return failures, t, end


def _post_worker(args: tuple[str, int, str]) -> tuple[int, float, float]:
    load_models()
    return _post_some(*args)


def posting_throughput(url: str, n: int, processes: int = 4) -> dict:
    """Vouchers per second through the service: one process, then ``processes`` at once (the
    numbering is serialised by ``coop.ledger.lock_head``); every posting must succeed."""
    failures, start, end = _post_some(url, n, "single")
    out = {"post_per_s": n / (end - start), "post_failures": failures}
    each = max(1, n // processes)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes) as pool:
        results = pool.map(_post_worker, [(url, each, f"p{w}") for w in range(processes)])
    wall = max(r[2] for r in results) - min(r[1] for r in results)
    out["post_4proc_per_s"] = each * processes / wall
    out["post_failures"] += sum(r[0] for r in results)
    return out


def timed(fn, repeat: int = 5) -> float:
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t) * 1000)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100,000 lines instead of 1,000,000")
    parser.add_argument("--lines", type=int, default=None)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", ""))
    parser.add_argument("--skip-verify", action="store_true")
    parser.add_argument(
        "--postings",
        type=int,
        default=None,
        help="vouchers posted one by one through the service (default 1,000; --quick 200)",
    )
    args = parser.parse_args()
    n_lines = args.lines or (100_000 if args.quick else 1_000_000)

    load_models()
    tmp = tempfile.TemporaryDirectory()
    url = args.database_url or f"sqlite:///{tmp.name}/bench.sqlite3"
    engine = make_engine(url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    factory = make_session_factory(engine)

    t0 = time.perf_counter()
    info = build(factory, n_lines, args.years)
    build_s = time.perf_counter() - t0
    print(
        f"built {info['vouchers']:,} vouchers, {info['lines']:,} lines, {info['balance_rows']:,} balance "
        f"rows "
        f"in {build_s:.1f} s (insert {info['insert_s']:.1f} s) on {engine.dialect.name}"
    )

    from coop import reports, statements
    from coop.export import write_beancount
    from coop.ledger import verify_chain

    y = info["last_year"]
    figures = {}
    with factory() as s:
        figures["tb_month_ms"] = timed(lambda: reports.trial_balance(s, y, 6, 6))
        figures["tb_year_ms"] = timed(lambda: reports.trial_balance(s, y, 1, 12))
        figures["balance_sheet_ms"] = timed(lambda: statements.balance_sheet(s, y, 12))
        figures["income_statement_ms"] = timed(lambda: statements.income_statement(s, y))
        figures["income_expense_ms"] = timed(lambda: reports.income_expense(s, y, 1, 3))
        tb = reports.trial_balance(s, y, 1, 12)
        assert tb.balanced
        for name, value in figures.items():
            print(f"{name:22} {value:8.1f} ms")
    n_post = args.postings if args.postings is not None else (200 if args.quick else 1000)
    if n_post:
        posting = posting_throughput(url, n_post)
        print(
            f"posting (service)       {posting['post_per_s']:8.1f} vouchers/s, 4 processes "
            f"{posting['post_4proc_per_s']:.1f} vouchers/s, {posting['post_failures']} failed"
        )
        assert posting["post_failures"] == 0, "every posting must succeed"
        figures.update(posting)
    with factory() as s:
        path = Path(tmp.name) / "books.beancount"
        t = time.perf_counter()
        with open(path, "w", encoding="utf-8") as fh:
            write_beancount(s, fh)
        figures["export_s"] = time.perf_counter() - t
        print(f"beancount export        {figures['export_s']:8.1f} s  ({path.stat().st_size / 1e6:.0f} MB)")
        if not args.skip_verify:
            t = time.perf_counter()
            result = verify_chain(s)
            figures["verify_s"] = time.perf_counter() - t
            assert result.ok, result.problem
            print(f"verify chain            {figures['verify_s']:8.1f} s")
    engine.dispose()
    tmp.cleanup()
    pairs = {"lines": info["lines"], "vouchers": info["vouchers"], "build_s": f"{build_s:.1f}"}
    pairs.update(
        {
            k: str(v) if isinstance(v, int) else f"{v:.1f}" if k.endswith(("_s", "_per_s")) else f"{v:.2f}"
            for k, v in figures.items()
        }
    )
    print(" ".join(f"{k}={v}" for k, v in pairs.items()))


if __name__ == "__main__":
    main()
