"""Only a name for ``core.db.MODEL_MODULES``: the traceability tables are in ``shop.trace.models``.

Delete this file once ``MODEL_MODULES`` names ``shop.trace.models`` itself.
"""

import shop.trace.models  # noqa: F401
