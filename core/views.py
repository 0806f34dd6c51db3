"""Home page, login, logout, language switch and the user's API tokens."""

from __future__ import annotations

from datetime import timedelta
from typing import cast
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user

from core import auth
from core.forms import LoginForm, TokenForm
from core.i18n import LANGUAGES
from core.web import attempt, db_session, login_required, settings

bp = Blueprint("core", __name__)


def _safe_next(target: str | None) -> str | None:
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/"):
        return None
    return target


@bp.get("/")
def home() -> ResponseReturnValue:
    """Landing page: the three areas, with shortcuts for the logged-in role."""
    return render_template("core/home.html")


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """Log in with username and password; repeated failures lock the username for a while."""
    form = LoginForm()
    if form.validate_on_submit():
        cfg = settings()
        with attempt():  # failed attempts are recorded (throttling) whatever the outcome
            result = auth.authenticate(
                db_session(),
                form.username.data or "",
                form.password.data or "",
                remote_addr=request.remote_addr or "",
                max_failures=cfg.login_max_failures,
                lockout=timedelta(minutes=cfg.login_lockout_minutes),
            )
        if result.user is not None:
            login_user(result.user)
            if result.user.locale in LANGUAGES and "lang" not in session:
                session["lang"] = result.user.locale
            return redirect(_safe_next(request.args.get("next")) or url_for("core.home"))
        if result.error == "locked" and result.retry_after is not None:
            minutes = max(1, int(result.retry_after.total_seconds() // 60) + 1)
            cast(list[str], form.username.errors).append(
                _("Too many failed attempts. Try again in %(minutes)d minutes.", minutes=minutes)
            )
            return render_template("core/login.html", form=form), 429
        cast(list[str], form.password.errors).append(_("Wrong username or password."))
        return render_template("core/login.html", form=form), 401
    return render_template("core/login.html", form=form), (400 if form.errors else 200)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Log out (POST with CSRF token, so other sites cannot log users out)."""
    logout_user()
    return redirect(url_for("core.home"))


@bp.get("/lang/<code>")
def set_language(code: str) -> ResponseReturnValue:
    """Switch the interface language and go back where the user was."""
    if code in LANGUAGES:
        session["lang"] = code
        if current_user.is_authenticated:
            with attempt():  # remembered for the next login
                current_user.locale = code
    return redirect(_safe_next(request.args.get("next")) or url_for("core.home"))


@bp.route("/account/tokens", methods=["GET", "POST"])
@login_required
def tokens() -> ResponseReturnValue:
    """List, create and revoke the user's personal API tokens."""
    form = TokenForm()
    new_token = None
    if form.validate_on_submit():
        with attempt():
            _row, new_token = auth.issue_token(db_session(), current_user, form.name.data or "web")
    rows = sorted(current_user.tokens, key=lambda t: t.id, reverse=True)
    return render_template("core/tokens.html", form=form, tokens=rows, new_token=new_token)


@bp.post("/account/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id: int) -> ResponseReturnValue:
    """Revoke one of the user's API tokens."""
    with attempt():
        revoked = auth.revoke_tokens(db_session(), current_user, token_id)
    if revoked:
        flash(_("Token revoked."), "success")
    return redirect(url_for("core.tokens"))


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Liveness probe for process supervisors."""
    return {"status": "ok"}
