"""Traceability: crop cycles, harvest lots and their trace codes, packs and gift boxes,
inspections, recalls, the public trace page, labels and the EPCIS export.

The rule of this package: it never imports the rest of ``shop`` (not even inside a
function). The shop's catalogue, cart and checkout import it; what it needs from the shop
(sales of a lot, orders affected by a recall, the products a farmer may choose) is handed
in through ``shop.trace.ports.ShopPort``, wired once in ``app.create_app``. See
docs/traceability.md for a map of the modules.
"""
