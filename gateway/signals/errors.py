"""Errors raised by the signal module.

A bad configuration must fail loudly at load time (shared/signals.md §3: ``m < 1/L``), never
produce a silently wrong map at run time, so config problems get their own exception type that
callers can catch separately from bad market-data inputs.
"""

from __future__ import annotations


class SignalConfigError(ValueError):
    """A signal parameter violates a rule of shared/signals.md (e.g. tier margin ``m >= 1/L``)."""


class SignalInputError(ValueError):
    """A market-data input cannot be used (e.g. a non-positive price)."""
