"""Alerts: route each warning down the six-level chain, send it, get it confirmed (叫应), escalate."""
