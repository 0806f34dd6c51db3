"""Only a name for ``core.demo.PHASES``: the traceability demo phase is ``shop.demo.seed_trace``
(the shop hands ``shop.trace.demo`` its products). Delete this file once ``PHASES`` names
``("shop.demo", "seed_trace")`` itself.
"""

from shop.demo import seed_trace as seed_demo

__all__ = ["seed_demo"]
