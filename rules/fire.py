"""Placeholder: filled in after milestone 1."""

from __future__ import annotations
