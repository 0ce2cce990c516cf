"""Errors a user can cause, shared by every package (they all import them from here).

A command-line front end prints ``str(err)`` on one line and exits with code 2; nothing
here carries a traceback to the user."""
from __future__ import annotations


class InputError(Exception):
    """A user's input is unusable as a whole (missing root, label file without the
    expected columns, an unknown option value). The message names the file and what was
    expected."""


class StoreError(InputError):
    """A store on disk does not match its manifest (missing or resized shard, changed
    table, no manifest): it is refused, not read. The message says how to check it
    (``prep verify``) and that rerunning the build command repairs it."""
