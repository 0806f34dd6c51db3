"""The trace blueprint itself, so each part's view module (``views``, ``production_views``)
adds its routes to one ``bp`` without importing another view module."""

from __future__ import annotations

from flask import Blueprint, current_app

bp = Blueprint("trace", __name__)
CACHE_KEY = "trace_cache"  # app.extensions: the StoryCache of built trace pages (views.py)


def stories_changed() -> None:
    """A lot's story changed (and is committed): forget the cached stories."""
    cache = current_app.extensions.get(CACHE_KEY)
    if cache is not None:
        cache.clear()
