"""Errors about the data an experiment runs on (the spec's own errors are :class:`SpecError`)."""

from __future__ import annotations


class DataError(ValueError):
    """The corpus or its features are unusable for the spec (names files/columns)."""
