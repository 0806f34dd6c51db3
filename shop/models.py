"""Tables of the shop domain (shop_*)."""

from __future__ import annotations
