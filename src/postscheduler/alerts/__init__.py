"""Alerts: telling a person, once, when something needs one (``alerter`` says how)."""

from __future__ import annotations

from .alerter import Alerter, send_test_alert

__all__ = ["Alerter", "send_test_alert"]
