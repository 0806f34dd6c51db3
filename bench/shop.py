"""Shop benchmark: requests per second and p95 latency of the catalogue, a product page and
adding to the cart, served by gunicorn (2 sync workers) on loopback from a SQLite file with
the demo catalogue, against a minimal Flask "hello" app served the same way in the same run.
Also counts the SQL queries each page runs (in process), with 10 and with 40 products, to
show there is no query per product.

The load generator runs in this process (threads, one connection per request, as gunicorn's
sync workers close connections), on the same cores: the figures are relative, and noisy
when other work shares the machine. The last line is ``name=value`` pairs.

    .venv/bin/python bench/shop.py --quick     # 3 s per endpoint, well under a minute
    .venv/bin/python bench/shop.py             # 15 s per endpoint
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HELLO = """from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello():
    return "hello"
"""


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))] if s else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, timeout: float = 30) -> None:
    import requests

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server at {url} did not come up")


def gunicorn(app_spec: str, port: int, cwd: Path, env: dict) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "gunicorn"
    return subprocess.Popen(
        [str(exe), "-w", "2", "-b", f"127.0.0.1:{port}", "--log-level", "warning", app_spec],
        cwd=str(cwd),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def seed(db_url: str, extra_products: int = 0) -> None:
    from app import create_app
    from coop.demo import seed_members
    from core.db import Base
    from core.web import EXT
    from shop import demo

    app = create_app({"env": "testing", "database_url": db_url, "secret_key": "bench"})
    db = app.extensions[EXT]["db"]
    Base.metadata.create_all(db.engine)
    with db.session_factory() as s:
        ctx: dict = {}
        seed_members(s, ctx)
        demo.seed(s, ctx)
        s.commit()
    db.engine.dispose()


def add_products(db_url: str, n: int) -> None:
    from decimal import Decimal

    from app import create_app
    from core.web import EXT
    from shop import catalog
    from shop.models import Product

    app = create_app({"env": "testing", "database_url": db_url, "secret_key": "bench"})
    with app.extensions[EXT]["db"].session_factory() as s:
        for i in range(n):
            p = Product(
                slug=f"extra-{i}", name_zh=f"样品{i}", name_en=f"Sample {i}", unit="bag", price_fen=1000 + i
            )
            s.add(p)
            s.flush()
            catalog.add_stock(s, p, Decimal(5), household_id=None, harvested_on=None)
        s.commit()


def count_queries(db_url: str, env: str = "testing") -> dict[str, int]:
    """SQL statements per request, in process (same code as gunicorn runs).

    ``env="testing"`` turns the short-lived listing cache off (every query shown);
    ``"development"`` keeps it on, as gunicorn runs here.
    """
    from sqlalchemy import event

    from app import create_app
    from core.web import EXT
    from shop.models import Product

    app = create_app({"env": env, "database_url": db_url, "secret_key": "bench"})
    app.config["WTF_CSRF_ENABLED"] = False
    engine = app.extensions[EXT]["db"].engine
    counted: list[int] = []
    event.listen(engine, "before_cursor_execute", lambda *a, **k: counted.append(1))
    client = app.test_client()
    with app.extensions[EXT]["db"].session_factory() as s:
        from sqlalchemy import select

        pid = s.scalar(select(Product.id).where(Product.slug == "yellow-peach"))
    out = {}
    for name, call in (
        ("home", lambda: client.get("/shop/")),
        ("product", lambda: client.get("/shop/p/yellow-peach")),
        ("add", lambda: client.post("/shop/cart/add", data={"product_id": pid, "quantity": "1"})),
        ("home_with_cart", lambda: client.get("/shop/")),
    ):
        call()  # warm (first-use work such as the translation catalogue)
        counted.clear()
        response = call()
        assert response.status_code in (200, 302), (name, response.status_code)
        out[name] = len(counted)
    engine.dispose()
    return out


def load(
    url_for_thread, *, seconds: float, threads: int, method: str = "GET", prepare=None
) -> tuple[float, float, int]:
    """Hammer for ``seconds`` with ``threads`` clients; (requests/s, p95 ms, errors)."""
    import requests

    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker(i: int):
        s = requests.Session()
        state = prepare(s) if prepare else None
        mine: list[float] = []
        bad = 0
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                if method == "GET":
                    r = s.get(url_for_thread(i), timeout=30, allow_redirects=False)
                else:
                    r = s.post(
                        url_for_thread(i),
                        data=state["data"](),
                        timeout=30,
                        allow_redirects=False,
                        headers={"X-CSRFToken": state["token"]},
                    )
                ok = r.status_code in (200, 302)
            except requests.RequestException:
                ok = False
            mine.append(time.perf_counter() - t0)
            bad += not ok
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    t0 = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - t0
    return len(latencies) / elapsed, pct(latencies, 0.95) * 1000, errors[0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 s per endpoint (under a minute in all)")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    seconds = args.seconds or (3.0 if args.quick else 15.0)

    tmp = Path(tempfile.mkdtemp(prefix="bench-shop-"))
    procs: list[subprocess.Popen] = []
    try:
        db_url = f"sqlite:///{tmp / 'shop.sqlite3'}"
        seed(db_url)
        queries10 = count_queries(db_url)
        cached = count_queries(db_url, env="development")
        (tmp / "hello.py").write_text(HELLO)
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "SECRET_KEY": "bench-secret",
            "TIANYUAN_ENV": "development",
            "TIANYUAN_INSTANCE_PATH": str(tmp / "instance"),
            "PYTHONPATH": str(ROOT),
        }
        hello_port, shop_port = free_port(), free_port()
        procs.append(gunicorn("hello:app", hello_port, tmp, env))
        procs.append(gunicorn("app:create_app()", shop_port, ROOT, env))
        hello_url, shop_url = f"http://127.0.0.1:{hello_port}", f"http://127.0.0.1:{shop_port}"
        wait_up(hello_url + "/")
        wait_up(shop_url + "/shop/")

        from sqlalchemy import create_engine, select

        engine = create_engine(db_url)
        with engine.connect() as conn:
            from shop.models import Product

            product_ids = list(conn.scalars(select(Product.id).order_by(Product.id)))
        engine.dispose()

        def prepare(session):
            html = session.get(shop_url + "/shop/p/yellow-peach", timeout=30).text
            token = re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)
            counter = [0]

            def data():
                counter[0] += 1
                return {
                    "product_id": product_ids[counter[0] % len(product_ids)],
                    "quantity": "1",
                    "csrf_token": token,
                }

            return {"token": token, "data": data}

        results = {}
        results["hello"] = load(lambda i: hello_url + "/", seconds=seconds, threads=args.threads)
        results["home"] = load(lambda i: shop_url + "/shop/", seconds=seconds, threads=args.threads)
        results["product"] = load(
            lambda i: shop_url + "/shop/p/yellow-peach", seconds=seconds, threads=args.threads
        )
        results["add"] = load(
            lambda i: shop_url + "/shop/cart/add",
            seconds=seconds,
            threads=args.threads,
            method="POST",
            prepare=prepare,
        )
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)
        procs.clear()
        add_products(db_url, 30)
        queries40 = count_queries(db_url)

        print(
            f"gunicorn 2 sync workers, {args.threads} client threads, {seconds:.0f} s per endpoint, "
            f"SQLite (WAL)"
        )
        hello_rps = results["hello"][0]
        for name, (rps, p95, errs) in results.items():
            share = f"{rps / hello_rps * 100:5.1f}% of hello" if name != "hello" else ""
            print(f"  {name:8} {rps:8.1f} req/s   p95 {p95:7.1f} ms   errors {errs:3d}   {share}")
        print("SQL queries per request (10 products -> 40 products):")
        for name in queries10:
            print(
                f"  {name:15} {queries10[name]} -> {queries40[name]}   (with the 3 s listing cache: "
                f"{cached[name]})"
            )
        pairs = {
            "hello_rps": f"{hello_rps:.1f}",
            "home_rps": f"{results['home'][0]:.1f}",
            "home_p95_ms": f"{results['home'][1]:.1f}",
            "product_rps": f"{results['product'][0]:.1f}",
            "product_p95_ms": f"{results['product'][1]:.1f}",
            "add_rps": f"{results['add'][0]:.1f}",
            "add_p95_ms": f"{results['add'][1]:.1f}",
            "home_vs_hello_pct": f"{results['home'][0] / hello_rps * 100:.1f}",
            "product_vs_hello_pct": f"{results['product'][0] / hello_rps * 100:.1f}",
            "errors": str(sum(r[2] for r in results.values())),
            "home_queries": str(queries10["home"]),
            "home_queries_40": str(queries40["home"]),
            "home_queries_cached": str(cached["home"]),
            "product_queries": str(queries10["product"]),
            "product_queries_cached": str(cached["product"]),
            "add_queries": str(queries10["add"]),
        }
        print(" ".join(f"{k}={v}" for k, v in pairs.items()))
    finally:
        for p in procs:
            p.terminate()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
