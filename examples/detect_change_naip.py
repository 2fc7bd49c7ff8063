"""Zero-shot change detection between NAIP 2009 and 2020 through the Python API.

    python examples/detect_change_naip.py

Uses the public NAIP sample pair (from RS_SAM_DATA_DIR when set, else downloaded once)
and the official MobileSAM weights (downloaded once). Set RS_SAM_WEIGHTS=random to run
offline with untrained weights: the pipeline runs, the polygons mean nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import geopandas as gpd

import rs_sam
from rs_sam.change import ChangeSettings
from rs_sam.samples import sample_pair

out_dir = Path(__file__).parent / "output"
out_dir.mkdir(exist_ok=True)

before, after = sample_pair("naip")
settings = ChangeSettings(
    encoder="mobile_sam",
    weights=os.environ.get("RS_SAM_WEIGHTS", "official"),  # type: ignore[arg-type]
    threshold=150.0,  # degrees: stricter than the 145 default
    bands=(1, 2, 3),  # NAIP is R, G, B, NIR
)
result = rs_sam.detect_change(
    before,
    after,
    out_dir / "naip_changes_api.gpkg",
    settings=settings,
    save_probability=out_dir / "naip_change_score_api.tif",
    overwrite=True,
)
print(result.summary())
changes = gpd.read_file(result.output)
print(changes.sort_values("area_m2", ascending=False).head(10).to_string(index=False))
