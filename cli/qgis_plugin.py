"""``rs-sam qgis``: install the rs-sam Processing plugin into a QGIS user profile."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rs_sam.cli.options import handle_errors

profile_option = click.option(
    "--profile",
    default="default",
    show_default=True,
    help="QGIS user profile (folder name; see Settings > User Profiles in QGIS).",
)
profiles_dir_option = click.option(
    "--profiles-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="QGIS profiles folder, for a portable QGIS or tests "
    "[default: $QGIS_CUSTOM_CONFIG_PATH/profiles, else QGIS's per-user folder].",
)


@click.group("qgis")
def qgis() -> None:
    """Install or remove the rs-sam plugin for QGIS (Processing Toolbox > rs-sam)."""


@qgis.command("install")
@profile_option
@profiles_dir_option
@click.option(
    "--python",
    "python",
    type=click.Path(dir_okay=False, path_type=Path),
    default=sys.executable,
    show_default="this interpreter",
    help="Python interpreter with rs-sam installed, which the plugin runs the models with.",
)
@click.option("--link", is_flag=True, help="Symlink the plugin source instead of copying it.")
@click.option("--overwrite", is_flag=True, help="Replace an installed plugin.")
@handle_errors
def install(
    profile: str, profiles_dir: Path | None, python: Path, link: bool, overwrite: bool
) -> None:
    """Install the plugin into a QGIS profile and enable it."""
    from rs_sam.qgis_profile import install_plugin, interpreter_record_path

    dest = install_plugin(
        profile, profiles_dir=profiles_dir, python=python, link=link, overwrite=overwrite
    )
    how = f"linked to {dest.resolve()}" if link else "copied"
    click.echo(f"Installed the rs-sam QGIS plugin at {dest} ({how}).")
    click.echo(f"Python interpreter recorded in {interpreter_record_path(dest.parents[2])}.")
    click.echo("Restart QGIS; the algorithms are under Processing Toolbox > rs-sam.")


@qgis.command("uninstall")
@profile_option
@profiles_dir_option
@handle_errors
def uninstall(profile: str, profiles_dir: Path | None) -> None:
    """Remove the plugin from a QGIS profile."""
    from rs_sam.qgis_profile import uninstall_plugin

    dest = uninstall_plugin(profile, profiles_dir=profiles_dir)
    click.echo(f"Removed the rs-sam QGIS plugin from {dest}; restart QGIS.")
