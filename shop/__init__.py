"""The produce shop: catalogue, cart, checkout, payments, orders and settlement into the books.

Traceability (harvest lots, trace codes, recalls, EPCIS) is its own package, ``shop.trace``.
"""

from core.errors import N_

__all__ = ["N_"]
