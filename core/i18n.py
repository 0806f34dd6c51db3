"""Flask-Babel set-up: zh_CN first, English on request.

The locale comes from ``?lang=``, then the language chosen in the header (kept in the
session), then the user's saved preference, then zh_CN.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from flask import Flask, request, session
from flask_babel import Babel
from flask_login import current_user

from core import clock
from core.config import PROJECT_ROOT

LANGUAGES = {"zh_CN": "中文", "en": "English"}
DEFAULT_LOCALE = "zh_CN"
babel = Babel()


def select_locale() -> str:
    for lang in (
        request.args.get("lang"),
        session.get("lang"),
        getattr(current_user, "locale", None) if current_user else None,
    ):
        if isinstance(lang, str) and lang in LANGUAGES:
            return lang
    return DEFAULT_LOCALE


def init_app(app: Flask, catalogues: Sequence[Path] = ()) -> None:
    """Flask-Babel with core's catalogue and the areas' ``catalogues`` (directories), merged:
    each area owns its translations; the app says which areas there are."""
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LOCALE)
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", clock.zone_name())  # core.web.init_app configured it
    dirs = [PROJECT_ROOT / "translations", *catalogues]
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", ";".join(str(d) for d in dirs))
    babel.init_app(app, locale_selector=select_locale)

    @app.context_processor
    def _languages() -> dict[str, object]:
        from flask_babel import get_locale

        locale = get_locale()
        return {
            "LANGUAGES": LANGUAGES,
            "current_locale": "zh_CN" if locale and locale.language == "zh" else "en",
        }
