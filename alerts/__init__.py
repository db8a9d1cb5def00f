"""Alerts: route each warning down the six-level chain, send it, get it confirmed (叫应), escalate.

The pipeline, one module per stage:  route → group (inhibit, silence) → render → fanout (channels) →
escalate (confirm), around the durable notification log (nflog). service.serve() wires them.
"""
