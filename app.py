"""The application factory: settings, database, extensions, blueprints and CLI.

``create_app()`` is the composition root: the only place that knows every part.
Run with ``flask --app app run`` (the Makefile does this for you).
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_migrate import Migrate

from core.config import PROJECT_ROOT, Settings


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

    web.init_app(app, settings)
    i18n.init_app(app)
    Migrate(app, web_database(app), directory=str(PROJECT_ROOT / "migrations"), render_as_batch=True)

    from coop.views import bp as coop_bp
    from coop.views import public_bp as disclosure_bp
    from core.views import bp as core_bp
    from iot.admin_views import bp as iot_admin_bp
    from iot.api import bp as iot_api_bp
    from iot.views import bp as iot_bp
    from shop import catalog, orders
    from shop.staff_views import bp as shop_staff_bp
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
        sales_of=orders.sales_of, orders_for_lot=orders.orders_for_lot, products=catalog.active_products
    )
    app.register_blueprint(trace_bp, shop=trace_shop)

    from coop.cli import coop_cli
    from core.cli import demo_cli, users_cli
    from iot.cli import iot_cli
    from shop.cli import shop_cli

    for group in (users_cli, demo_cli, coop_cli, iot_cli, shop_cli):
        app.cli.add_command(group)
    return app


def web_database(app: Flask):
    from core.web import EXT

    return app.extensions[EXT]["db"]
