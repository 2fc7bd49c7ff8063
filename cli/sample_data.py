"""``rs-sam sample-data NAME``: print the paths of a public sample pair (fetching it once)."""

from __future__ import annotations

import click

from rs_sam.cli.options import handle_errors


@click.command("sample-data")
@click.argument("name", default="naip")
@handle_errors
def sample_data(name: str) -> None:
    """Print the two dates of sample NAME (default: naip), separated by a space.

    Looks in $RS_SAM_DATA_DIR first, then the cache; downloads and verifies on first use.
    """
    from rs_sam.samples import sample_pair

    a, b = sample_pair(name)
    click.echo(f"{a} {b}")
