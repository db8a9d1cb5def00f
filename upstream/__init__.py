"""CAP 1.2 from upper-level platforms: POST, feeds, MQTT in; warnings from above out (through duty's issuer)."""

import yujing.config  # noqa: F401  first: its loader imports upstream.config (the `upstream:` section) in turn
