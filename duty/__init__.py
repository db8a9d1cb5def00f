"""The duty office (值班室): operator accounts, the audit log, the JSON API and CLI, and the issuer of warnings
from above. A floor above alerts and rules: it may import them; nothing below imports it.
"""

import yujing.config  # noqa: F401  first: its loader imports duty.config (the `duty:` section) in turn
