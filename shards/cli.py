"""What every command line of the project shares: one way to end on a user's mistake."""
from __future__ import annotations

from typing import NoReturn

import typer


def fail(message: str) -> NoReturn:
    """End the command with exit code 2 and one line on stderr, ``error: <message>``: the
    message names the file or option and what was expected (never a traceback)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)
