"""The one refusal of traceability's services: ``LotError``, a ``core.errors.DomainError``.

Its templates are marked with ``N_`` where they are raised; a view shows them through
``core.web.attempt`` in the user's language.
"""

from __future__ import annotations

from core.errors import DomainError


class LotError(DomainError):
    """A crop cycle, lot, inspection or recall operation was refused; nothing was written.

    ``field``: the form field the refusal is about, when it is one (``"household_id"``)."""

    field: str | None = None
