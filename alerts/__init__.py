"""Alerts: route each warning down the six-level chain, send it, get it confirmed (叫应), escalate.

The stages, in the order ``Pipeline.stages`` lists them (pipeline.py): record → group (inhibit, silence) →
decide → route → render → enqueue → fan-out (channels) → confirm → publish (CAP) → done, around the durable
notification log (nflog/). service.serve() wires them.
"""
