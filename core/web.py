"""Flask glue: a database session per request, login, CSRF, roles and JSON errors.

Services never import this module; views and CLI commands do.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar, cast

from flask import (
    Flask,
    Request,
    Response,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.json.provider import DefaultJSONProvider
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask.typing import ResponseReturnValue
from flask_babel import gettext
from flask_login import LoginManager, current_user, login_user, logout_user
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy.orm import Session
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.exceptions import BadRequest, HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from core import auth, clock
from core.config import Settings
from core.db import make_engine, make_session_factory
from core.errors import DomainError
from core.models import User
from core.money import format_fen, format_yuan
from core.parse import MAX_INT

csrf = CSRFProtect()
login_manager = LoginManager()
EXT = "tianyuan"
SID = "_sid"  # the browser session's id in the cookie; its row is core.models.WebSession
ALWAYS_KEPT = ("lang",)  # what survives a login, a logout and an ended session


class _Database:
    """What Flask-Migrate needs (``engine`` and ``metadata``) plus our session factory."""

    def __init__(self, settings: Settings):
        from core.db import Base

        self.engine = make_engine(settings.database_url)
        self.session_factory = make_session_factory(self.engine)
        self.metadata = Base.metadata


def settings() -> Settings:
    found: Settings = current_app.extensions[EXT]["settings"]
    return found


def database() -> _Database:
    found: _Database = current_app.extensions[EXT]["db"]
    return found


def db_session() -> Session:
    """The session of the current request (or app context), created on first use."""
    if "db_session" not in g:
        g.db_session = database().session_factory()
    session: Session = g.db_session
    return session


def _close_session(exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()  # rolls back anything not committed


class attempt:
    """The one way a view ends its transaction: commit, or roll back and say why.

        with attempt() as result:
            orders.cancel(db_session(), order)
        if result.ok:
            flash(_("Order cancelled."), "success")

    Without an exception the request's session is committed. Any ``DomainError`` (every
    domain's refusals, and mistyped form fields) rolls back, is flashed in the user's
    language (unless ``flash_error=False``: then read ``result.error``, e.g. to show it
    beside a field or in a JSON error) and is swallowed; anything else rolls back and
    propagates. It catches every refusal on purpose: a service may refuse for a reason of
    another domain (a sale posted into a closed month), which must not become a 500.
    """

    def __init__(self, *, flash_error: bool = True) -> None:
        self.flash_error = flash_error
        self.ok = False
        self.error: str | None = None
        self.exception: DomainError | None = None

    def __enter__(self) -> attempt:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, _tb: TracebackType | None
    ) -> bool:
        session = db_session()
        if exc_type is None:
            session.commit()
            self.ok = True
            return False
        session.rollback()
        if isinstance(exc, DomainError):
            self.exception = exc
            self.error = exc.translated(gettext)
            if self.flash_error:
                flash(self.error, "error")
            return True
        return False


# -- browser sessions: the cookie is signed, but only a session the server knows is believed --


LoginHook = Callable[[Session, dict[str, Any], User], dict[str, Any]]


def on_login(app: Flask, hook: LoginHook) -> None:
    """Carry something of the anonymous session into the one a login starts, on purpose.

    ``hook(db_session, old_session, user)`` runs inside the login's transaction and returns
    the keys to put into the new session (the shop moves the guest's cart to the user under
    a new token). Nothing else survives a login but the language, so a cookie copied before
    it opens nothing afterwards."""
    app.extensions[EXT].setdefault("on_login", []).append(hook)


def client_address() -> str:
    """The client's address (behind ``TRUSTED_PROXIES`` proxies, from X-Forwarded-For)."""
    return (request.remote_addr or "")[:64]


def login_limits() -> auth.LoginLimits:
    cfg = settings()
    return auth.LoginLimits(
        per_account_and_address=cfg.login_max_failures,
        per_address=cfg.login_max_per_address,
        per_account=cfg.login_max_per_account_day,
        window=timedelta(minutes=cfg.login_lockout_minutes),
        tokens_per_address=cfg.login_max_per_address,
    )


def _reset_session() -> None:
    kept = {key: session[key] for key in ALWAYS_KEPT if key in session}
    session.clear()
    session.update(kept)


def current_session_id() -> str | None:
    """The id of this browser's session if the server knows it (checked on arrival)."""
    sid = session.get(SID)
    return sid if isinstance(sid, str) else None


def bind_session() -> str:
    """Make sure this browser has a server-side session and return its id.

    Call it before remembering anything in the session that must not outlive it (a guest's
    cart and orders), and before the view writes anything: the row is committed at once in a
    session of its own (SQLite lets one writer at a time, so not while the request's session
    holds an open write)."""
    sid = current_session_id()
    if sid is not None:
        return sid
    with database().session_factory() as own:
        sid = auth.open_web_session(own)
        own.commit()
    session[SID] = sid
    return sid


def log_in(user: User) -> None:
    """Begin a fresh session for ``user``: the old one ends (its cookie opens nothing any
    more); only the language and what the ``on_login`` hooks hand over are carried."""
    db = db_session()
    old = dict(session)
    carried: dict[str, Any] = {}
    for hook in current_app.extensions[EXT].get("on_login", []):
        carried.update(hook(db, old, user))
    auth.end_web_session(db, current_session_id())
    sid = auth.open_web_session(db, user)
    db.commit()
    _reset_session()
    session.update(carried)
    login_user(user)
    session[SID] = sid


def log_out() -> None:
    """End this browser's session on the server and empty the cookie (language kept)."""
    db = db_session()
    auth.end_web_session(db, current_session_id())
    db.commit()
    logout_user()
    _reset_session()


def _check_browser_session() -> None:
    """Empty a session the server does not know (ended, expired, or from a copied cookie)
    and log out a cookie whose user was deactivated or ended all their sessions."""
    if request.endpoint == "static":
        return
    sid = session.get(SID)
    if "_user_id" in session:
        user = auth.session_user(db_session(), sid if isinstance(sid, str) else None, session["_user_id"])
        if user is None:
            _reset_session()
        else:
            g.session_user = user
    elif sid is not None and (not isinstance(sid, str) or auth.web_session(db_session(), sid) is None):
        _reset_session()


def wants_json() -> bool:
    """Errors as JSON: for the API, for requests that prefer JSON and for token-authenticated
    programs; everything else gets the error page."""
    return (
        request.path.startswith("/api/")
        or bearer_token(request) is not None
        or (request.accept_mimetypes.best == "application/json" and not request.accept_mimetypes.accept_html)
    )


def json_error(status: int, message: str, **extra: Any) -> Response:
    response = jsonify({"error": {"status": status, "message": message, **extra}})
    response.status_code = status
    return response


View = TypeVar("View", bound=Callable[..., ResponseReturnValue])


def role_required(*roles: str) -> Callable[[View], View]:
    """Allow only logged-in users with one of ``roles`` (401/redirect if anonymous, 403 otherwise)."""

    def decorator(view: View) -> View:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            if not current_user.is_authenticated:
                return cast(ResponseReturnValue, login_manager.unauthorized())
            if roles and current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return cast(View, wrapped)

    return decorator


login_required = role_required()


def csrf_exempt(view: View) -> View:
    """Mark a view (e.g. a signed webhook) as not needing a CSRF token."""
    view._csrf_exempt = True  # type: ignore[attr-defined]
    return view


class BoundedIntConverter(IntegerConverter):
    """``<int:...>`` in every route, bounded to what a database integer holds: a path with a
    larger number is simply not found (404), instead of an overflow in the database driver (500)."""

    def __init__(self, url_map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(url_map, *args, **kwargs)


def bounded_int(text: Any) -> int:
    """``int`` for request fields: a number a database integer cannot hold is no number."""
    value = int(text)
    if not -MAX_INT <= value <= MAX_INT:
        raise ValueError(text)
    return value


class _Fields(ImmutableMultiDict):  # type: ignore[type-arg]
    """Query and form fields where ``get(name, type=int)`` and ``getlist(name, type=int)``
    treat an integer beyond 64 bits like any other non-number (the default, or left out),
    so no view hands the database driver an id it overflows on."""

    def get(self, key: Any, default: Any = None, type: Any = None) -> Any:  # type: ignore[override]  # noqa: A002
        return super().get(key, default, bounded_int if type is int else type)

    def getlist(self, key: Any, type: Any = None) -> Any:  # noqa: A002
        return super().getlist(key, bounded_int if type is int else type)


class TianyuanRequest(Request):
    parameter_storage_class = _Fields


# Every response's security headers (set in one place, ``_security_headers``). Scripts only from
# our own static files (no inline script or on* handlers: static/js/confirm.js reads data-*
# attributes); inline style attributes are allowed (a few templates colour legend swatches);
# no page may be framed; images also as data: URIs (none today; QR codes are our own URLs).
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}
HSTS = "max-age=31536000; includeSubDomains"  # production only: HTTPS is the proxy's (deploy/)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class FiniteJSONProvider(DefaultJSONProvider):
    """``jsonify`` that always writes JSON: a NaN or an infinity (Python's json would write the
    invalid tokens ``NaN``/``Infinity``) becomes ``null``. Inputs refuse non-finite numbers
    before they are stored (``core.parse.number``); this is the last line for what got in."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        try:
            return super().dumps(obj, **{**kwargs, "allow_nan": False})
        except ValueError:
            return super().dumps(_finite(obj), **{**kwargs, "allow_nan": False})


def bearer_token(req: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (any case of "Bearer"), else None.

    A request that sends one is authenticated by the token alone: its cookie session is not
    opened (nor saved), and an unknown or revoked token is refused with 401. So a junk bearer
    header can neither skip the CSRF check for a logged-in browser nor ride on its cookie."""
    scheme, _, token = req.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


class _CookieSessionUnlessBearer(SecureCookieSessionInterface):
    """The usual signed-cookie session, except for bearer-token requests: they get an empty
    session that is never sent back, whatever cookie came with them."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if bearer_token(request) is not None:
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        if bearer_token(request) is not None:
            return
        super().save_session(app, session, response)


def _refuse_nul_bytes() -> None:
    """No text anyone types contains a NUL byte, and PostgreSQL refuses to store one: a path,
    query or form field with one is a bad request (400), before any view sees it."""
    if "\x00" in request.path or any(
        "\x00" in key or "\x00" in value
        for fields in (request.args, request.form)
        for key, values in fields.lists()
        for value in values
    ):
        raise BadRequest("a NUL byte is not allowed in a request")


def init_app(app: Flask, cfg: Settings) -> None:
    clock.configure(cfg.timezone)
    app.extensions[EXT] = {"settings": cfg, "db": _Database(cfg), "on_login": []}
    if cfg.trusted_proxies > 0:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=cfg.trusted_proxies, x_proto=cfg.trusted_proxies
        )
    app.teardown_appcontext(_close_session)
    app.request_class = TianyuanRequest
    app.json = FiniteJSONProvider(app)
    app.before_request(_refuse_nul_bytes)

    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    csrf.init_app(app)

    app.session_interface = _CookieSessionUnlessBearer()

    @app.before_request
    def _bearer_authenticates_or_is_refused() -> ResponseReturnValue | None:
        token = bearer_token(request)
        if token is None:
            return None
        db = db_session()
        try:
            user = auth.user_for_token(db, token, remote_addr=client_address(), limits=login_limits())
        except auth.LoginLocked as exc:  # too many wrong tokens from this address: 429, nothing tried
            db.rollback()
            return json_error(429, exc.translated(gettext))
        db.commit()  # the token's last_used_at, or the wrong token's count against its address
        if user is None:
            abort(401, "the bearer token is unknown, revoked or its user is inactive")
        g._login_user = user  # Flask-Login's current user for this request: the token's, never a cookie's
        return None

    @app.before_request
    def _csrf_unless_token_or_exempt() -> None:
        if request.method in ("GET", "HEAD", "OPTIONS", "TRACE"):
            return
        if bearer_token(request) is not None:
            return  # authenticated by its token (else refused above); no cookie session was opened
        view = app.view_functions.get(request.endpoint or "")
        if view is not None and getattr(view, "_csrf_exempt", False):
            return
        if not app.config.get("WTF_CSRF_ENABLED", True):
            return
        csrf.protect()

    app.before_request(_check_browser_session)
    login_manager.init_app(app)
    login_manager.login_view = "core.login"
    login_manager.session_protection = "basic"

    def _load_user(user_id: str) -> User | None:
        found: User | None = g.get("session_user")
        if found is not None and str(found.id) == str(user_id):
            return found
        return auth.session_user(db_session(), current_session_id(), user_id)

    login_manager.user_loader(_load_user)  # bearer tokens: _bearer_authenticates_or_is_refused

    @login_manager.unauthorized_handler  # type: ignore[untyped-decorator]
    def _unauthorized() -> ResponseReturnValue:
        if wants_json():
            return json_error(401, "authentication required: log in or send 'Authorization: Bearer <token>'")
        return redirect(
            url_for("core.login", next=request.full_path if request.query_string else request.path)
        )

    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError) -> ResponseReturnValue:
        if wants_json():
            return json_error(400, f"CSRF check failed: {exc.description}")
        return render_template("core/error.html", code=400, message=exc.description, csrf=True), 400

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> ResponseReturnValue:
        if exc.code is None or exc.code < 400:
            return exc
        if wants_json():
            return json_error(exc.code, exc.description or exc.name)
        return render_template("core/error.html", code=exc.code, message=exc.description), exc.code

    @app.after_request
    def _security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if cfg.is_production:
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        return response

    app.jinja_env.filters["fen"] = format_fen
    app.jinja_env.filters["yuan"] = format_yuan
    app.jinja_env.filters["localtime"] = _localtime


def _localtime(value: datetime | int | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Jinja filter: a stored UTC time (or epoch seconds) in the configured zone."""
    return clock.local(value).strftime(fmt) if value is not None else ""
