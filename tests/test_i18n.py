"""Every catalogue is complete in Chinese, and pages switch language."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from core.config import PROJECT_ROOT

CATALOGUES = sorted(PROJECT_ROOT.glob("**/translations/zh_Hans_CN/LC_MESSAGES/messages.po"))
CATALOGUES = [p for p in CATALOGUES if ".venv" not in p.parts]


def test_catalogues_exist():
    assert {p.relative_to(PROJECT_ROOT).parts[0] for p in CATALOGUES} >= {"translations"}


@pytest.mark.parametrize("path", CATALOGUES, ids=lambda p: str(Path(p).relative_to(PROJECT_ROOT)))
def test_every_message_is_translated(path):
    with open(path, "rb") as fh:
        catalogue = read_po(fh)
    missing = [
        m.id
        for m in catalogue
        if m.id and (not m.string or (isinstance(m.string, tuple) and not all(m.string)) or m.fuzzy)
    ]
    assert missing == [], f"untranslated in {path}: {missing[:10]}"


PLACEHOLDER = re.compile(r"%\((\w+)\)[-#0 +]*\d*(?:\.\d+)?[sdrfi]|%%")


@pytest.mark.parametrize("path", CATALOGUES, ids=lambda p: str(Path(p).relative_to(PROJECT_ROOT)))
def test_translations_keep_the_placeholders_and_add_no_stray_percent(path):
    """A translation with another placeholder, or a % sign its English has not, breaks the page that
    formats it (Jinja's gettext always applies %)."""
    with open(path, "rb") as fh:
        catalogue = read_po(fh)
    wrong = []
    for m in catalogue:
        if not m.id or not isinstance(m.id, str) or not isinstance(m.string, str) or not m.string:
            continue
        other_names = sorted(n for n in PLACEHOLDER.findall(m.string) if n) != sorted(
            n for n in PLACEHOLDER.findall(m.id) if n
        )
        stray = "%" in PLACEHOLDER.sub("", m.string) and "%" not in PLACEHOLDER.sub("", m.id)
        if other_names or stray:
            wrong.append(m.id)
    assert wrong == [], f"in {path}: {wrong[:5]}"


def test_home_page_in_chinese_then_english(client):
    html = client.get("/").get_data(as_text=True)
    assert "财务公开" in html and 'lang="zh-CN"' in html
    client.get("/lang/en")
    html = client.get("/").get_data(as_text=True)
    assert "Public accounts" in html and 'lang="en"' in html


def test_no_message_translated_two_ways_across_areas():
    """Flask-Babel merges the area catalogues, so one msgid must mean one thing everywhere
    (use pgettext with a context where an area needs a different word)."""
    seen: dict[tuple, tuple[str, str]] = {}
    clashes = []
    for path in CATALOGUES:
        with open(path, "rb") as fh:
            catalogue = read_po(fh)
        for m in catalogue:
            if not m.id or not m.string:
                continue
            key = (m.context, m.id if isinstance(m.id, str) else m.id[0])
            value = m.string if isinstance(m.string, str) else m.string[0]
            if key in seen and seen[key][0] != value:
                clashes.append((key[1], seen[key], (value, str(path))))
            seen.setdefault(key, (value, str(path)))
    assert clashes == []
