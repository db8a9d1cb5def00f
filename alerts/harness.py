"""Moved to ``testing/alerts.py``.

This name stays an alias of that module (the same module object, so a test that patches one of its
attributes patches the real one) while code on other branches still imports it; new code imports
``testing.alerts``. Remove once nothing does."""

import sys

import testing.alerts

sys.modules[__name__] = testing.alerts
