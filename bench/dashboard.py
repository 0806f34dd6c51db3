"""Dashboard benchmark: chart queries from rollups against the same answers from raw rows.

Builds one-minute readings for N sensors (default 50 sensors over 365 days, about 26
million rows: 10 greenhouses x 5 metrics) in a fresh SQLite file, builds the rollups
set-based, then times the 24 h, 7 d, 30 d and 1 y series queries (resolution chosen by
range, as the charts do) and the overview page (a full Flask request), printing median and
p95, and the same series computed from raw rows. Also times ``apply_readings`` (the
rollup upkeep on the ingest path). The last line is ``name=value`` pairs.

    python bench/dashboard.py --quick          # 10 sensors x 90 days, < 1 minute
    python bench/dashboard.py                  # the full 26M-row run (minutes, GBs of disk)
    python bench/dashboard.py --sensors 50 --days 60
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

METRIC_NAMES = ("air_temperature", "air_humidity", "soil_moisture", "co2", "light")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def fmt(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:8.2f} ms   p95 {pct(values, 0.95) * 1000:8.2f} ms"


def build(db_url: str, greenhouses: int, days: int, end: int, progress=print) -> int:
    from sqlalchemy import insert

    from app import load_models
    from core.db import Base, make_engine, make_session_factory
    from iot import quantities
    from iot.models import Device, Greenhouse

    load_models()
    engine = make_engine(db_url)
    Base.metadata.create_all(engine)
    session = make_session_factory(engine)()
    ghs = []
    for g in range(greenhouses):
        gh = Greenhouse(code=f"B{g:03d}", name=f"Bench {g}", crop="cucumber", area_m2=600.0)
        session.add(gh)
        session.flush()
        dev = Device(device_id=f"bench-{g}", greenhouse_id=gh.id, kind="sensor", online=True)
        session.add(dev)
        session.flush()
        ghs.append((gh.id, dev.id))
    session.commit()
    start = end - days * 86400
    start -= start % 60
    raw = engine.raw_connection()
    cur = raw.cursor()
    cur.execute("PRAGMA synchronous=OFF")
    cur.execute("PRAGMA cache_size=-262144")
    total = 0
    rng = random.Random(42)
    sql = "INSERT INTO iot_readings (device_id, greenhouse_id, metric_id, ts, value) VALUES (?, ?, ?, ?, ?)"
    for gh_id, dev_id in ghs:
        for name in METRIC_NAMES:
            mid = quantities.BY_NAME[name].id
            base, amp = {
                "air_temperature": (20, 7),
                "air_humidity": (70, 15),
                "soil_moisture": (60, 8),
                "co2": (600, 200),
                "light": (20000, 20000),
            }[name]
            noise = rng.random
            w = 2 * math.pi / 86400
            rows = (
                (dev_id, gh_id, mid, ts, round(base + amp * math.sin(ts * w) + noise(), 2))
                for ts in range(start, end, 60)
            )
            cur.executemany(sql, rows)
            raw.commit()
            total += (end - start) // 60
            progress(f"  built {total:,} readings")
    cur.close()
    raw.close()
    # rollups and latest values, set-based
    from iot import rollups

    t = time.perf_counter()
    rollups.rebuild(session, chunk_days=400)
    session.commit()
    progress(f"  rollups rebuilt in {time.perf_counter() - t:.1f} s")
    session.execute(
        insert(Device).values(device_id="bench-extra", greenhouse_id=ghs[0][0], kind="controller")
    )
    session.commit()
    session.close()
    engine.dispose()
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10 sensors x 90 days, fewer repetitions")
    ap.add_argument("--sensors", type=int, default=50, help="multiple of 5 (5 metrics per greenhouse)")
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--raw-reps", type=int, default=7)
    ap.add_argument("--dir", help="where to build the database (default a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = ap.parse_args()
    if args.quick:
        args.sensors, args.days, args.reps, args.raw_reps = 10, 90, 30, 5
    greenhouses = max(1, args.sensors // len(METRIC_NAMES))
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="bench-dashboard-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / "dashboard.sqlite3"
    if db_path.exists():
        db_path.unlink()
    db_url = f"sqlite:///{db_path}"
    now = int(time.time())
    end = now - now % 60
    print(
        f"dashboard benchmark: {greenhouses * len(METRIC_NAMES)} sensors x {args.days} days, SQLite {db_path}"
    )
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    t0 = time.perf_counter()
    rows = build(db_url, greenhouses, args.days, end)
    build_s = time.perf_counter() - t0
    print(f"built {rows:,} readings + rollups in {build_s:.1f} s ({rows / build_s:,.0f} rows/s)")

    from app import load_models
    from core.config import Settings
    from core.db import make_engine, make_session_factory
    from iot import quantities
    from iot.series import RANGES, choose_resolution, series, series_from_raw

    load_models()
    engine = make_engine(db_url)
    session = make_session_factory(engine)()
    rng = random.Random(7)
    gh_ids = list(range(1, greenhouses + 1))
    mids = [quantities.BY_NAME[n].id for n in METRIC_NAMES]
    results: dict[str, float] = {}
    print(
        f"\n{'query':<10} {'resolution':<6} {'points':>6}   rollup/raw-table query              raw "
        f"aggregation"
    )
    for key, span in RANGES.items():
        start = end - span
        res = choose_resolution(start, end)
        fast, slow = [], []
        points = 0
        for i in range(args.reps):
            g, m = rng.choice(gh_ids), rng.choice(mids)
            t = time.perf_counter()
            s = series(session, g, m, start, end)
            fast.append(time.perf_counter() - t)
            points = len(s.points)
            if i < args.raw_reps:
                t = time.perf_counter()
                series_from_raw(session, g, m, start, end, res)
                slow.append(time.perf_counter() - t)
        results[f"q{key}_median_ms"] = statistics.median(fast) * 1000
        results[f"q{key}_p95_ms"] = pct(fast, 0.95) * 1000
        results[f"raw{key}_p95_ms"] = pct(slow, 0.95) * 1000
        results[f"speedup{key}"] = pct(slow, 0.5) / max(pct(fast, 0.5), 1e-9)
        print(f"{key:<10} {res:<6} {points:>6}   {fmt(fast)}   {fmt(slow)}   x{results[f'speedup{key}']:.0f}")

    # the overview page and a greenhouse page, as full Flask requests
    from app import create_app
    from core import auth

    app = create_app(
        Settings.from_env(
            {}, env="testing", instance_path=workdir / "instance", database_url=db_url, secret_key="bench"
        )
    )
    app.config["WTF_CSRF_ENABLED"] = False
    auth.create_user(session, "bench-admin", "bench-password", "admin")
    session.commit()
    client = app.test_client()
    client.post("/login", data={"username": "bench-admin", "password": "bench-password"})
    for name, path in (("overview", "/iot/"), ("page30d", "/iot/g/B000?range=30d")):
        times = []
        for _ in range(args.reps):
            t = time.perf_counter()
            r = client.get(path)
            times.append(time.perf_counter() - t)
            assert r.status_code == 200, r.status_code
        results[f"{name}_median_ms"] = statistics.median(times) * 1000
        results[f"{name}_p95_ms"] = pct(times, 0.95) * 1000
        print(f"{name + ' page':<24} {'':>3}   {fmt(times)}")

    # rollup upkeep on the ingest path: apply_readings on 500-row batches of new readings
    from sqlalchemy import select, text

    from iot.rollups import apply_readings

    batches = 40
    t = time.perf_counter()
    for b in range(batches):
        rows_b = [
            {
                "greenhouse_id": gh_ids[i % len(gh_ids)],
                "metric_id": mids[i % len(mids)],
                "ts": end + b * 60 + i // 50,
                "value": 1.0 + i,
            }
            for i in range(500)
        ]
        apply_readings(session, rows_b)
    session.rollback()
    apply_s = time.perf_counter() - t
    results["apply_rows_per_s"] = batches * 500 / apply_s
    print(
        f"apply_readings: {results['apply_rows_per_s']:,.0f} readings/s folded into rollups (500-row batches)"
    )

    # alert evaluation on the ingest path, with every greenhouse on its crop's default rules
    from iot.alerts import ensure_default_rules, evaluate_batch
    from iot.models import Greenhouse

    for gh in session.scalars(select(Greenhouse)):
        ensure_default_rules(session, gh)
    session.commit()
    t = time.perf_counter()
    for b in range(batches):
        rows_b = [
            {
                "greenhouse_id": gh_ids[i % len(gh_ids)],
                "metric_id": mids[i % len(mids)],
                "ts": end + b * 60 + i // 50,
                "value": 20.0 + (i % 7),
            }
            for i in range(500)
        ]
        evaluate_batch(session, rows_b)
        session.flush()
    session.rollback()
    results["alerts_rows_per_s"] = batches * 500 / (time.perf_counter() - t)
    print(f"evaluate_batch: {results['alerts_rows_per_s']:,.0f} readings/s checked against default rules")
    size_mb = os.path.getsize(db_path) / 1e6
    hourly = session.execute(text("SELECT count(*) FROM iot_rollups_hourly")).scalar()
    print(f"database {size_mb:,.0f} MB, {hourly:,} hourly buckets")
    session.close()
    engine.dispose()
    if not args.keep and not args.dir:
        shutil.rmtree(workdir, ignore_errors=True)
    results["rows"] = rows
    keys = [
        "rows",
        "q24h_p95_ms",
        "q7d_p95_ms",
        "q30d_p95_ms",
        "q1y_p95_ms",
        "overview_p95_ms",
        "page30d_p95_ms",
        "raw30d_p95_ms",
        "raw1y_p95_ms",
        "speedup30d",
        "speedup1y",
        "apply_rows_per_s",
        "alerts_rows_per_s",
    ]
    print(
        " ".join(
            f"{k}={results[k]:.0f}"
            if k in ("rows", "apply_rows_per_s", "alerts_rows_per_s")
            else f"{k}={results[k]:.2f}"
            for k in keys
        )
    )


if __name__ == "__main__":
    main()
