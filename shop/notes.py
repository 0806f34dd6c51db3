"""The notes that flag an order for staff (``Order.attention``), kept so that every page says
them in its reader's language.

Each note is one line of JSON: the untranslated template (marked with ``N_``) and its
parameters; a parameter may itself be a note (``{"t": ..., "p": ...}``), e.g. the reason a
payment was refused. Lines that are not JSON (notes written before this module) are shown as
they are. ``add`` never repeats a note that is already there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

Translate = Callable[[str], str]


def note(template: str, **params: Any) -> dict[str, Any]:
    """A note (or a parameter of one) that is translated when it is shown."""
    return {"t": template, "p": params}


def add(existing: str | None, template: str, **params: Any) -> str:
    """``existing`` with the note appended (unchanged if the same note is already there)."""
    line = json.dumps(note(template, **params), ensure_ascii=False, sort_keys=True, default=str)
    lines = [each for each in (existing or "").split("\n") if each.strip()]
    if line in lines:
        return "\n".join(lines)
    return "\n".join([*lines, line])


def _say(item: Any, translate: Translate) -> str:
    if isinstance(item, dict) and isinstance(item.get("t"), str):
        text = translate(item["t"])
        params = item.get("p") if isinstance(item.get("p"), dict) else {}
        if not params:
            return text.replace("%%", "%")
        said = {key: _say(value, translate) for key, value in params.items()}
        try:
            return text % said
        except (KeyError, TypeError, ValueError):  # a broken translation must not hide the note
            return item["t"] % said
    return str(item)


def texts(attention: str | None, translate: Translate = str) -> list[str]:
    """Each note of ``attention`` in the reader's language (``translate`` is gettext)."""
    out = []
    for raw in (attention or "").split("\n"):
        raw = raw.strip()
        if not raw:
            continue
        try:
            item = json.loads(raw)
        except ValueError:
            item = raw
        out.append(_say(item, translate))
    return out


def english(attention: str | None) -> str:
    """The notes in English, one line each (logs, the CLI, audit entries)."""
    return " ".join(texts(attention))
