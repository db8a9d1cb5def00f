"""Yujing (预警): hazard-monitoring sensors to graded warnings, down to the household."""

__version__ = "0.1.0"
