"""The composition root, the only place that knows every part: ``create_app()`` (settings,
database, extensions, blueprints, CLI), the list of modules with tables, and the demo (its
users, the order its areas seed a village in, and a small supervisor for its processes).

Run with ``flask --app app run`` (the Makefile does this for you).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import click
from flask import Flask
from flask.cli import AppGroup
from flask_migrate import Migrate
from sqlalchemy.orm import Session

from core import auth
from core.config import PROJECT_ROOT, Settings

AREAS = ("coop", "iot", "shop")  # the domains, each with its blueprints, CLI and catalogue


def create_app(config: Settings | dict[str, Any] | None = None) -> Flask:
    """Build the Flask app. ``config`` is a ``Settings`` or a dict of overrides.

    Dict keys that name ``Settings`` fields override the environment; any other keys
    (e.g. ``WTF_CSRF_ENABLED``) go into ``app.config``.
    """
    from dataclasses import fields

    from core import i18n, web

    if isinstance(config, Settings):
        settings, flask_overrides = config, {}
    else:
        overrides = dict(config or {})
        names = {f.name for f in fields(Settings)}
        settings = Settings.from_env(**{k: v for k, v in overrides.items() if k in names})
        flask_overrides = {k: v for k, v in overrides.items() if k not in names}

    app = Flask(
        __name__,
        instance_path=str(settings.instance_path),
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    app.config.update(
        SECRET_KEY=settings.secret_key,
        TESTING=settings.env == "testing",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_production,
        MAX_CONTENT_LENGTH=16 * 1024 * 1024,
    )
    app.config.update(flask_overrides)
    app.url_map.converters["int"] = web.BoundedIntConverter  # before any route is added

    load_models()
    web.init_app(app, settings)
    i18n.init_app(app, [PROJECT_ROOT / area / "translations" for area in AREAS])
    Migrate(app, web_database(app), directory=str(PROJECT_ROOT / "migrations"), render_as_batch=True)

    from coop.views import bp as coop_bp
    from coop.views import public_bp as disclosure_bp
    from core.views import bp as core_bp
    from iot.admin_views import bp as iot_admin_bp
    from iot.api import bp as iot_api_bp
    from iot.views import bp as iot_bp
    from shop import catalog, orders, payments
    from shop.staff_views import bp as shop_staff_bp
    from shop.trace import (
        gs1_views,  # noqa: F401  (the Digital Link and GTIN routes join trace_bp)
        label_views,  # noqa: F401  (/trace/labels joins trace_bp)
        production_views,  # noqa: F401  (its routes join the trace blueprint)
    )
    from shop.trace.location_views import bp as trace_locations_bp
    from shop.trace.ports import ShopPort
    from shop.trace.views import bp as trace_bp
    from shop.views import bp as shop_bp
    from shop.webhook_views import bp as stripe_webhook_bp

    for blueprint in (
        core_bp,
        coop_bp,  # /coop: the village books (officials)
        disclosure_bp,  # /disclosure: public accounts (anyone)
        iot_bp,  # /iot: greenhouse dashboards
        iot_admin_bp,  # /iot/admin: greenhouses and devices
        iot_api_bp,  # /api/v1: greenhouse JSON API
        shop_bp,  # /shop: catalogue, cart, checkout, my orders
        shop_staff_bp,  # /shop/staff: order desk, products and stock
        stripe_webhook_bp,  # POST /stripe/webhook
    ):
        app.register_blueprint(blueprint)
    # /t/<code>, /01/<gtin>/10/<lot>, /trace: lots and labels. Traceability imports nothing
    # of the shop; what it needs from orders and the catalogue is handed in here, once.
    trace_shop = ShopPort(
        sales_of=orders.sales_of,
        orders_for_lot=orders.orders_for_lot,
        products=catalog.active_products,
        flag_recalled=orders.flag_recalled,
        after_recall=lambda session, lots: payments.expire_recalled_checkouts(session, lots, web.settings()),
    )
    from shop.trace import compliance_views

    compliance_views.register(trace_bp)  # 承诺达标合格证 and the producer's page, on the same blueprint
    app.register_blueprint(trace_bp, shop=trace_shop)
    app.register_blueprint(trace_locations_bp)  # /loc/...: the places EPCIS documents name

    from coop.cli import coop_cli
    from core.cli import users_cli
    from iot.cli import iot_cli
    from shop.cli import shop_cli

    for group in (users_cli, demo_cli, coop_cli, iot_cli, shop_cli):
        app.cli.add_command(group)
    return app


def web_database(app: Flask) -> Any:
    from core.web import EXT

    return app.extensions[EXT]["db"]


def load_models() -> None:
    """Import every module that defines tables, so ``core.db.Base.metadata`` holds the whole
    schema (the app, migrations and tests; a worker imports only the models it uses)."""
    import coop.chain  # noqa: F401  (registers the session events that record covered rows)
    import coop.models  # noqa: F401
    import core.models  # noqa: F401
    import iot.models  # noqa: F401
    import shop.models  # noqa: F401
    import shop.trace.models  # noqa: F401


# --- the demo: a village to try, and every process it needs ---------------------------

DEMO_USERS = [
    # username, role, display name, household index (farmers)
    ("admin", "admin", "系统管理员", None),
    ("kuaiji", "official", "赵会计", None),
    ("cunzhang", "official", "赵村长", None),
    ("licai", "oversight", "李理财（民主理财小组）", None),
    ("zhaolin", "farmer", "赵林", 0),
    ("wangfang", "farmer", "王芳", 1),
    ("liqiang", "farmer", "李强", 2),
    ("customer", "customer", "陈女士", None),
]


def seed_users(session: Session, ctx: dict[str, Any]) -> None:
    households = ctx.get("households", [])
    ctx.setdefault("users", {})
    for username, role, name, household_index in DEMO_USERS:
        password = ctx["password"] or secrets.token_urlsafe(9)
        household_id = None
        if household_index is not None and household_index < len(households):
            household_id = households[household_index].id
        user = auth.create_user(
            session, username, password, role, display_name=name, household_id=household_id
        )
        ctx["users"][username] = user
        ctx["accounts"].append((username, role, password))


def seed_demo(session: Session, password: str | None = None) -> list[tuple[str, str, str]]:
    """Create the demo village, Zhaozhuang (赵庄); returns (username, role, password) of its users.

    Each area seeds its own part, in this order: member households (coop), users linked
    to them (core), greenhouses, devices and two weeks of history (iot), products and
    their stock (shop), crop cycles, inspections, packs and a recall (trace), the books
    (coop), and an order paid twice (shop, posted into the books). Each phase takes
    (session, ctx) and may leave what later phases need in ctx.
    """
    import coop.demo
    import iot.demo
    import shop.demo

    ctx: dict[str, Any] = {"password": password, "accounts": []}
    for phase in (
        coop.demo.seed_members,
        seed_users,
        iot.demo.seed,
        iot.demo.seed_history,
        shop.demo.seed,
        shop.demo.seed_trace,
        coop.demo.seed_books,
        shop.demo.seed_second_payment,  # posts to the books: after them
    ):
        phase(session, ctx)
        session.flush()
    accounts: list[tuple[str, str, str]] = ctx["accounts"]
    return accounts


def demo_processes(settings: Settings, port: int, speedup: float) -> list[Process]:
    """What ``flask demo run`` starts: a broker (unless one listens), the ingester, the
    simulator, the alert checker and the web app."""
    import shutil

    from iot.broker import find_mosquitto, render_config

    py = sys.executable
    host, mqtt_port, *_ = settings.mqtt_host_port
    procs: list[Process] = []
    if port_open(host, mqtt_port):
        print(f"demo: an MQTT broker already listens on {host}:{mqtt_port}; using it")
    else:
        mosquitto = find_mosquitto() or shutil.which("mosquitto")
        if mosquitto is None:
            raise SystemExit(
                "demo: mosquitto is not installed (make demo installs it: apt-get install mosquitto)"
            )
        data = settings.instance_path / "mosquitto-data"
        data.mkdir(parents=True, exist_ok=True)
        conf = settings.instance_path / "mosquitto-demo.conf"
        conf.write_text(
            "# Written by `flask demo run`: a development broker.\n" + render_config(mqtt_port, data)
        )
        procs.append(
            Process("broker", [mosquitto, "-c", str(conf)], ready=lambda: port_open(host, mqtt_port))
        )
    web = [
        py,
        "-m",
        "flask",
        "--app",
        "app",
        "run",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-reload",
    ]
    return [
        *procs,
        Process("ingester", [py, "-m", "iot.ingest"]),
        # the demo seed holds two weeks of history: go on from now, a reading every 10 s
        Process(
            "simulator",
            [
                py,
                "-m",
                "iot.simulate",
                "--speedup",
                str(speedup),
                "--backfill-hours",
                "0",
                "--interval",
                "10",
            ],
        ),
        # silent sensors and offline devices are noticed by time, not by a message
        Process("alerts", [py, "-m", "iot.check_alerts", "--every", "60"]),
        Process("web", web),
    ]


# --- a small process supervisor for the demo (production uses systemd units) ---------

COLORS = ("36", "33", "31", "32", "35", "34")


@dataclass(frozen=True)
class Process:
    name: str
    argv: list[str]
    ready: Callable[[], bool] | None = None  # wait for this (up to 5 s) before starting the next


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def _pump(name: str, color: str, stream: IO[bytes]) -> None:
    tty = sys.stdout.isatty()
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip()
        prefix = f"\033[{color}m{name:>9}\033[0m |" if tty else f"{name:>9} |"
        print(f"{prefix} {line}", flush=True)


def supervise(processes: Sequence[Process], *, cwd: Path, banner: str = "") -> int:
    """Run ``processes`` until one exits (its code is returned) or we are told to stop (0)."""
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = threading.Event()

    def stop(*_args: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    exit_code = 0
    try:
        for i, proc_spec in enumerate(processes):
            proc = subprocess.Popen(
                proc_spec.argv,
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            children.append((proc_spec.name, proc))
            assert proc.stdout is not None
            color = COLORS[i % len(COLORS)]
            threading.Thread(target=_pump, args=(proc_spec.name, color, proc.stdout), daemon=True).start()
            if proc_spec.ready is not None:
                for _ in range(50):
                    if proc_spec.ready():
                        break
                    time.sleep(0.1)
        if banner:
            print(banner, flush=True)
        while not stopping.is_set():
            for name, proc in children:
                if proc.poll() is not None:
                    print(f"{name} exited with code {proc.returncode}; stopping the rest", flush=True)
                    exit_code = proc.returncode or 1
                    stopping.set()
                    break
            stopping.wait(0.5)
    finally:
        for _name, proc in reversed(children):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _name, proc in reversed(children):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        print("stopped", flush=True)
    return exit_code


demo_cli = AppGroup("demo", help="Demo data and the all-in-one demo runner.")


@demo_cli.command("seed")
@click.option("--if-empty", is_flag=True, help="Do nothing when the database already has users.")
@click.option("--password", default=None, help="One password for every demo user (default: random, printed).")
def seed_command(if_empty: bool, password: str | None) -> None:
    """Create a believable demo village: households, greenhouses, products, users."""
    from sqlalchemy import func, select

    from core.cli import transaction
    from core.models import User

    with transaction() as session:
        if if_empty and session.scalar(select(func.count(User.id))):
            click.echo("database already has data; demo seed skipped")
            return
        accounts = seed_demo(session, password=password)
    click.echo("Demo data created. Accounts (passwords are shown only now):")
    for username, role, pw in accounts:
        click.echo(f"  {role:9} {username:14} {pw}")


@demo_cli.command("run")
@click.option("--port", default=5000, show_default=True)
@click.option("--speedup", default=60.0, show_default=True, help="Simulated seconds per real second.")
def run_command(port: int, speedup: float) -> None:
    """Start the broker, ingester, simulator, alert checker and web app; Ctrl-C stops them all."""
    settings = Settings.from_env()
    banner = f"demo: Tianyuan is running on http://127.0.0.1:{port}  (Ctrl-C stops everything)"
    raise SystemExit(supervise(demo_processes(settings, port, speedup), cwd=PROJECT_ROOT, banner=banner))
