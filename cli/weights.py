"""``rs-sam weights``: list, fetch, verify and locate official checkpoints."""

from __future__ import annotations

import click


@click.group()
def weights() -> None:
    """Manage the official model checkpoints."""
