"""Errors shared by the trainer's modules (kept apart so they import nothing heavy)."""
from __future__ import annotations


class FeatureError(Exception):
    """A feature front end cannot be built or run for a reason the user can fix
    (missing or unfitting checkpoint, unknown front end, input too short)."""
