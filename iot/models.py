"""Tables of the iot domain (iot_*)."""

from __future__ import annotations
