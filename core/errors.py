"""Refusals meant for the user: one base class for every domain's errors.

A service that refuses raises a subclass of ``DomainError`` with an English template
(marked with ``N_`` so Babel extracts it) and named parameters; nothing is written.
The view (``core.web.attempt``) or the CLI shows it in the user's language::

    raise LedgerError(N_("period %(period)s is closed"), period="2025-12")

``str(exc)`` is the English text (logs, the CLI); ``exc.translated(gettext)`` is what a
page shows. No view ever matches message text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def N_(message: str) -> str:
    """Mark a message for the translation catalogue; it is translated when shown."""
    return message


class DomainError(ValueError):
    """A refused operation; ``template`` and ``params`` say why. Nothing was written.

    Templates are always %-formatted, with or without parameters (as Jinja's gettext does),
    so a literal percent sign is written ``%%`` everywhere: ``N_("at least 60%% ...")``."""

    def __init__(self, template: str, **params: Any) -> None:
        self.template = template
        self.params = params
        super().__init__(_format(template, params))

    def translated(self, gettext: Callable[[str], str]) -> str:
        """The message in the user's language (English if the translation is broken)."""
        try:
            return gettext(self.template) % self.params
        except (KeyError, TypeError, ValueError):  # a broken translation must not hide the error
            return str(self)


def _format(template: str, params: dict[str, Any]) -> str:
    try:
        return template % params
    except (KeyError, TypeError, ValueError):  # a template that is not a format: shown as it is
        return template
