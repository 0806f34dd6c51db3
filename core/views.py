"""Home page, login, logout, language switch, the user's account (password, "log out
everywhere", API tokens) and the admin's user list (deactivate, reset a password)."""

from __future__ import annotations

from typing import cast
from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from core import auth
from core.forms import LoginForm, PasswordChangeForm, PasswordResetForm, TokenForm
from core.i18n import LANGUAGES
from core.models import User
from core.web import (
    attempt,
    client_address,
    current_session_id,
    db_session,
    log_in,
    log_out,
    login_limits,
    login_required,
    role_required,
)

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
    """Log in with username and password, in a fresh session; attempts are throttled per
    account and address, per address and per account (``core.auth.reserve_login``)."""
    form = LoginForm()
    if form.validate_on_submit():
        username, address = form.username.data or "", client_address()
        # the attempt is counted and committed before the (slow) password check, so parallel
        # guesses cannot get past the limit
        with attempt(flash_error=False) as reserved:
            auth.reserve_login(db_session(), username, address, login_limits())
        if not reserved.ok:
            cast(list[str], form.username.errors).append(reserved.error or "")
            return render_template("core/login.html", form=form), 429
        with attempt():
            user = auth.check_login(db_session(), username, form.password.data or "", address)
        if user is not None:
            log_in(user)
            if user.locale in LANGUAGES and "lang" not in session:
                session["lang"] = user.locale
            return redirect(_safe_next(request.args.get("next")) or url_for("core.home"))
        cast(list[str], form.password.errors).append(_("Wrong username or password."))
        return render_template("core/login.html", form=form), 401
    return render_template("core/login.html", form=form), (400 if form.errors else 200)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Log out (POST with CSRF token, so other sites cannot log users out): the session ends
    on the server, so a copy of the cookie opens nothing any more."""
    log_out()
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


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account() -> ResponseReturnValue:
    """The user's account: change the password (ends the other sessions), log out everywhere."""
    form = PasswordChangeForm()
    if form.validate_on_submit():
        if form.new.data != form.confirm.data:
            cast(list[str], form.confirm.errors).append(_("The two new passwords differ."))
        else:
            try:  # a new password the rule refuses costs no login attempt (set_password checks it again)
                auth.check_password_rule(form.new.data or "", current_user.username)
            except auth.AuthError as exc:
                cast(list[str], form.new.errors).append(exc.translated(_))
                return render_template("core/account.html", form=form), 400
            # the current password is checked like a login: throttled, the slot taken first
            with attempt(flash_error=False) as result:
                auth.reserve_login(db_session(), current_user.username, client_address(), login_limits())
            if not result.ok:
                cast(list[str], form.current.errors).append(result.error or "")
                return render_template("core/account.html", form=form), 429
            with attempt(flash_error=False) as result:
                auth.change_password(
                    db_session(),
                    current_user,
                    form.current.data or "",
                    form.new.data or "",
                    keep_session=current_session_id(),
                )
                auth.release_login(db_session(), current_user.username, client_address())
            if result.ok:
                flash(
                    _("Password changed. Your other sessions have ended and your API tokens were revoked."),
                    "success",
                )
                return redirect(url_for("core.account"))
            cast(list[str], form.new.errors).append(result.error or "")
    status = 400 if form.errors else 200
    return render_template("core/account.html", form=form), status


@bp.post("/account/logout-everywhere")
@login_required
def logout_everywhere() -> ResponseReturnValue:
    """End every other session of the user (this one stays) and revoke their API tokens."""
    with attempt():
        auth.end_other_sessions(db_session(), current_user, keep_session=current_session_id())
    flash(_("Every other session has ended and your API tokens were revoked."), "success")
    return redirect(url_for("core.account"))


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


@bp.get("/admin/users")
@role_required("admin")
def users() -> ResponseReturnValue:
    """Every account, with deactivate/activate, a password reset and "end sessions"."""
    rows = list(db_session().scalars(select(User).order_by(User.username)))
    return render_template("core/users.html", users=rows, reset_form=PasswordResetForm())


def _managed_user(user_id: int) -> User:
    user = db_session().get(User, user_id)
    if user is None:
        abort(404)
    return user


@bp.post("/admin/users/<int:user_id>/deactivate")
@role_required("admin")
def deactivate_user(user_id: int) -> ResponseReturnValue:
    """Disable an account: its sessions end at their next request, its tokens are revoked."""
    user = _managed_user(user_id)
    if user.id == current_user.id:
        flash(_("You cannot deactivate your own account."), "error")
        return redirect(url_for("core.users"))
    with attempt() as result:
        auth.deactivate_user(db_session(), user)
    if result.ok:
        flash(_("%(name)s was deactivated; their sessions have ended.", name=user.username), "success")
    return redirect(url_for("core.users"))


@bp.post("/admin/users/<int:user_id>/activate")
@role_required("admin")
def activate_user(user_id: int) -> ResponseReturnValue:
    """Enable a deactivated account again (it must log in anew)."""
    user = _managed_user(user_id)
    with attempt() as result:
        auth.activate_user(user)
    if result.ok:
        flash(_("%(name)s can log in again.", name=user.username), "success")
    return redirect(url_for("core.users"))


@bp.post("/admin/users/<int:user_id>/password")
@role_required("admin")
def reset_password(user_id: int) -> ResponseReturnValue:
    """Set a new password for a user; every session of theirs ends, their tokens are revoked."""
    user = _managed_user(user_id)
    form = PasswordResetForm()
    if not form.validate_on_submit():
        flash(_("Enter the new password."), "error")
        return redirect(url_for("core.users"))
    keep = current_session_id() if user.id == current_user.id else None
    with attempt() as result:
        auth.set_password(db_session(), user, form.new.data or "", keep_session=keep)
    if result.ok:
        flash(
            _("The password of %(name)s was reset; their sessions have ended.", name=user.username), "success"
        )
    return redirect(url_for("core.users"))


@bp.post("/admin/users/<int:user_id>/logout")
@role_required("admin")
def end_user_sessions(user_id: int) -> ResponseReturnValue:
    """End every session of a user (and revoke their tokens), e.g. for a lost phone."""
    user = _managed_user(user_id)
    keep = current_session_id() if user.id == current_user.id else None
    with attempt() as result:
        auth.end_other_sessions(db_session(), user, keep_session=keep)
    if result.ok:
        flash(_("Every session of %(name)s has ended.", name=user.username), "success")
    return redirect(url_for("core.users"))


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Liveness probe for process supervisors."""
    return {"status": "ok"}
