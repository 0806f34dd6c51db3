"""Trace codes: the short unguessable code printed under a label's QR code.

10 characters from an alphabet without look-alikes (no 0/O, no 1/I/L): 31^10 ≈ 8e14
codes, drawn with ``secrets`` so neighbours say nothing about each other.
"""

from __future__ import annotations

import secrets
import unicodedata

CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 10


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(text: str | None) -> str:
    """A code as a person types it, made comparable with the printed one.

    Forgiven: lower case; spaces and dashes anywhere (a code read out or copied in
    groups, ``abcde-fghjk``); full-width letters, digits, spaces and dashes, which a
    Chinese input method types (``ＡＢＣ２３``, ``　``, ``－``). Nothing else is changed:
    the alphabet has no 0, O, 1, I or L, so a code containing one is simply not found.
    """
    text = unicodedata.normalize("NFKC", text or "")  # full-width forms -> ASCII
    return "".join(ch for ch in text if not ch.isspace() and ch not in "-‐‑‒–—").upper()
