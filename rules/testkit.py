"""Moved to ``testing/rules.py``.

This name stays an alias of that module (the same module object, so a test that patches one of its
attributes patches the real one) while code on other branches still imports it; new code imports
``testing.rules``. Remove once nothing does."""

import sys

import testing.rules

sys.modules[__name__] = testing.rules
