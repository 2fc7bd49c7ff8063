"""The ``rs-sam`` command group: thin wrappers over the :mod:`rs_sam` API."""

from __future__ import annotations

import click

from rs_sam import __version__
from rs_sam.cli.batch import batch
from rs_sam.cli.detect_change import detect_change
from rs_sam.cli.pseudo_label import pseudo_label
from rs_sam.cli.qgis_plugin import qgis
from rs_sam.cli.sample_data import sample_data
from rs_sam.cli.segment import sam_objects, segment
from rs_sam.cli.train import evaluate, train
from rs_sam.cli.weights import weights


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rs-sam")
def cli() -> None:
    """Segment Anything for remote sensing: change detection and segmentation of rasters."""


cli.add_command(detect_change)
cli.add_command(sample_data)
cli.add_command(segment)
cli.add_command(sam_objects)
cli.add_command(train)
cli.add_command(evaluate)
cli.add_command(weights)
cli.add_command(qgis)
cli.add_command(batch)
cli.add_command(pseudo_label)
