"""Trace page benchmark: what one QR scan costs, without and with the story cache.

Builds, in a fresh SQLite file, a peach greenhouse with one crop cycle of D days: hourly
rollups for five metrics over the whole cycle, one-minute raw readings for its last two
days (as the ingester leaves them), two fertigation runs a day, and a harvest lot split
into packs and merged into a gift box. Then times

  story:   building the story of a pack (growing conditions over the cycle, ancestry,
           inspections, events) straight from the database, i.e. a cache miss;
  page:    GET /t/<code> through Flask with the cache warm (what most scans cost);
  cold:    GET /t/<code> with the cache cleared before every request;
  epcis:   building the EPCIS document of the gift box.

The last line is ``name=value`` pairs.

    python bench/trace_page.py --quick     # 60-day cycle, < 1 minute
    python bench/trace_page.py             # 150-day cycle, more requests
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def build(session, days: int):
    import random

    from sqlalchemy import insert

    from coop.models import Household
    from core import clock
    from iot import quantities
    from iot.models import Device, Greenhouse, HourlyRollup, IrrigationEvent, Reading
    from shop.models import Product, ProductSupplier
    from shop.trace import cycles, gtins, inspections, lots

    rng = random.Random(1)
    household = Household(code="ZZ001", head_name="赵建国")
    session.add(household)
    session.flush()
    gh = Greenhouse(code="GH1", name="Peach house 1", crop="peach", household_id=household.id, area_m2=600)
    session.add(gh)
    session.flush()
    sensor = Device(device_id="s1", greenhouse_id=gh.id)
    ctl = Device(device_id="c1", greenhouse_id=gh.id, kind="controller")
    peach = Product(
        slug="peach",
        name_zh="黄桃",
        name_en="Yellow peaches",
        unit="kg",
        price_fen=1800,
        crop="peach",
    )
    box = Product(slug="box", name_zh="礼盒", name_en="Gift box", unit="box", price_fen=9900)
    session.add_all([sensor, ctl, peach, box])
    session.flush()
    session.add(ProductSupplier(product_id=peach.id, household_id=household.id))  # the household sells it
    body = "9200000000001"  # restricted circulation, sold by weight
    gtins.set_gtin(session, peach, "by weight", body + gtins.check_digit(body))
    harvest = clock.today() - timedelta(days=1)
    planted = harvest - timedelta(days=days)
    start, end = clock.day_start_ts(planted), clock.day_start_ts(harvest + timedelta(days=1))
    raw_from = end - 2 * 86400
    centres = {"air_temperature": 21, "air_humidity": 70, "soil_moisture": 58, "ec": 1.8, "ph": 6.3}
    rollups, raw = [], []
    for name, centre in centres.items():
        mid = quantities.get(name).id
        for bucket in range(start, raw_from, 3600):
            values = [centre + rng.uniform(-5, 5) for _ in range(60)]
            rollups.append(
                dict(
                    greenhouse_id=gh.id,
                    metric_id=mid,
                    bucket=bucket,
                    count=60,
                    sum=sum(values),
                    min=min(values),
                    max=max(values),
                )
            )
        for ts in range(raw_from, end, 60):
            raw.append(
                dict(
                    device_id=sensor.id,
                    greenhouse_id=gh.id,
                    metric_id=mid,
                    ts=ts,
                    value=centre + rng.uniform(-5, 5),
                )
            )
    session.execute(insert(HourlyRollup), rollups)
    session.execute(insert(Reading), raw)
    events = [
        dict(
            device_id=ctl.id,
            greenhouse_id=gh.id,
            started_at=t,
            ended_at=t + 900,
            water_l=300.0,
            ec=1.8,
            ph=6.2,
            fertilizer={"tank_a": 1.5, "tank_b": 0.5},
        )
        for day in range(days + 1)
        for t in (start + day * 86400 + 7 * 3600, start + day * 86400 + 16 * 3600)
    ]
    session.execute(insert(IrrigationEvent), events)
    cycle = cycles.create_crop_cycle(session, gh.id, "peach", planted, variety="锦绣黄桃")
    lot = lots.create_harvest_lot(session, cycle, "500", "kg", harvested_on=harvest, product_id=peach.id)
    inspections.record_inspection(session, lot, "Lab", harvest, "pass")
    packs = lots.split_lot(session, lot, ["5"] * 20)
    other = lots.create_harvest_lot(session, cycle, "100", "kg", harvested_on=harvest, product_id=peach.id)
    gift = lots.merge_lots(session, [(packs[0], "5"), (other, "3")], product_id=box.id)
    session.commit()
    return packs[1], gift, len(rollups), len(raw), len(events)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--days", type=int)
    parser.add_argument("--requests", type=int)
    args = parser.parse_args()
    days = args.days or (60 if args.quick else 150)
    n = args.requests or (200 if args.quick else 1000)

    from app import create_app, load_models
    from core.config import Settings
    from core.db import Base
    from core.web import EXT
    from shop.orders import sales_of
    from shop.trace import epcis
    from shop.trace.story import build_story

    tmp = Path(tempfile.mkdtemp(prefix="trace-bench-"))
    try:
        settings = Settings.from_env(
            {},
            env="testing",
            instance_path=tmp,
            database_url=f"sqlite:///{tmp}/b.sqlite3",
            secret_key="bench",
        )
        load_models()
        app = create_app(settings)
        db = app.extensions[EXT]["db"]
        Base.metadata.create_all(db.engine)
        with db.session_factory() as session:
            t = time.perf_counter()
            pack, gift, n_roll, n_raw, n_irr = build(session, days)
            print(
                f"built {days}-day cycle: {n_roll} hourly rollups, {n_raw} raw readings, {n_irr} "
                f"fertigation runs"
                f" in {time.perf_counter() - t:.1f}s"
            )
            code, gift_id = pack.code, gift.id

        with db.session_factory() as session:
            pack_lot = session.get(type(pack), pack.id)
            story = timed(
                lambda: build_story(session, pack_lot, "https://x.cn", "6970000", sales_of=sales_of), 20
            )
            gift_lot = session.get(type(gift), gift_id)
            doc = timed(
                lambda: epcis.export_lot(session, gift_lot, "https://x.cn", "6970000", sales_of=sales_of), 5
            )
        client = app.test_client()
        cache = app.extensions["trace_cache"]
        assert client.get(f"/t/{code}").status_code == 200
        page = timed(lambda: client.get(f"/t/{code}"), n)

        def cold_get():
            cache.clear()
            client.get(f"/t/{code}")

        cold = timed(cold_get, max(20, n // 10))
        med = {
            k: statistics.median(v) * 1000
            for k, v in {"story": story, "page": page, "cold": cold, "epcis": doc}.items()
        }
        for k, v in (
            ("story", story),
            ("page (cache warm)", page),
            ("page (cache cold)", cold),
            ("epcis", doc),
        ):
            print(f"{k:18} median {statistics.median(v) * 1000:8.2f} ms   p95 {pct(v, 0.95) * 1000:8.2f} ms")
        print(f"warm page throughput (one thread): {1 / statistics.median(page):.0f} requests/s")
        print(
            f"days={days} story_ms={med['story']:.2f} page_warm_ms={med['page']:.2f} "
            f"page_cold_ms={med['cold']:.2f} epcis_ms={med['epcis']:.2f} "
            f"warm_rps={1 / statistics.median(page):.0f} speedup={med['cold'] / med['page']:.1f}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
