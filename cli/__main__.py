"""``python -m rs_sam.cli ...``: the ``rs-sam`` command (how QGIS runs it in another Python)."""

from rs_sam.cli.main import cli

if __name__ == "__main__":  # not again in spawned worker processes
    cli(prog_name="rs-sam")
