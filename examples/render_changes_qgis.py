r"""Render a raster with change polygons on top through QGIS's map renderer, headless, to a PNG.

    .venv-qgis/bin/python examples/render_changes_qgis.py A.tif changes.gpkg out.png

draws ``changes.gpkg`` (from ``rs-sam detect-change A.tif B.tif -o changes.gpkg``) over A.tif;
``--raster B.tif`` shows another raster. With ``--detect B.tif`` a missing ``changes.gpkg``
is first made by the ``rs_sam:detect_change`` Processing algorithm in this process, so one
command runs the whole QGIS path. The README's picture (no pretrained weights on the machine
that made it, so untrained weights and settings that merely give visible outlines: the
polygons are NOT real change):

    N=../shared/data/rasters/naip/m_4709963_se_14_1_
    .venv-qgis/bin/python examples/render_changes_qgis.py ${N}20090818.tif \
        /tmp/naip_changes.gpkg docs/images/qgis_naip_changes.png --detect ${N}20200831.tif \
        --raster B --weights random --threshold 88 --min-area 10000m2 --param SIMPLIFY=25 \
        --param PRED_IOU_THRESH=0 --param STABILITY_THRESH=0 --width 800 --palette

Needs QGIS >= 3.22 (``python3-qgis``) in the same Python as rs-sam. QGIS's settings go to a
temporary folder and no ``*.aux.xml`` is written beside the inputs (GDAL_PAM_ENABLED=NO).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
from pathlib import Path

# Before QGIS (and GDAL) start: no display, no side-car files beside the inputs.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("GDAL_PAM_ENABLED", "NO")

PROCESSING_PLUGINS = "/usr/share/qgis/python/plugins"  # Debian/Ubuntu's python3-qgis


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", type=Path, help="raster A (the earlier date; its grid and CRS)")
    p.add_argument("changes", type=Path, help="change polygons (rs-sam detect-change output)")
    p.add_argument("png", type=Path, help="PNG to write")
    p.add_argument(
        "--raster",
        metavar="A|B|FILE",
        default="A",
        help="raster to show: A, B (the --detect raster) or a file [default: A]",
    )
    p.add_argument("--width", type=int, default=1200, help="PNG width in pixels [default: 1200]")
    p.add_argument(
        "--detect",
        metavar="B",
        type=Path,
        help="raster B: run rs_sam:detect_change first if CHANGES does not exist",
    )
    p.add_argument(
        "--weights",
        choices=("official", "random"),
        default="official",
        help="with --detect: 'random' = untrained, meaningless polygons (said in the caption)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="with --weights random: torch seed, for a repeatable picture [default: 0]",
    )
    p.add_argument("--chip-size", type=int, help="with --detect: chip side in pixels")
    p.add_argument("--points-per-side", type=int, default=16, help="with --detect [default: 16]")
    p.add_argument("--threshold", type=float, help="with --detect: change angle in degrees")
    p.add_argument("--min-area", default="0", help="with --detect: e.g. 20m2 or 50px [default: 0]")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="with --detect: any other parameter, e.g. PRED_IOU_THRESH=0 (repeatable)",
    )
    p.add_argument(
        "--palette", action="store_true", help="write a 256-colour PNG (about a third of the size)"
    )
    p.add_argument("--color", default="#ffe000", help="outline colour [default: #ffe000]")
    p.add_argument("--overwrite", action="store_true", help="replace an existing PNG")
    return p.parse_args(argv)


def fail(message: str) -> None:
    print(f"{Path(sys.argv[0]).name}: error: {message}", file=sys.stderr)
    sys.exit(2)


def check_args(args: argparse.Namespace) -> Path:
    """Refuse bad arguments before QGIS starts; returns the raster to show."""
    if args.png.exists() and not args.overwrite:
        fail(f"{args.png} exists; pass --overwrite to replace it")
    if args.png.suffix.lower() != ".png":
        fail(f"{args.png}: the output must end in .png")
    if args.width < 16:
        fail(f"--width {args.width}: at least 16 pixels")
    if not args.changes.exists() and args.detect is None:
        fail(f"{args.changes} does not exist; make it with rs-sam detect-change or pass --detect B")
    shown = {"A": args.a, "B": args.detect}.get(args.raster.upper(), Path(args.raster))
    if shown is None:
        fail("--raster B needs --detect B")
    for path in (args.a, args.detect, shown):
        if path is not None and not path.is_file():
            fail(f"{path}: no such raster file")
    return shown


def detect(args: argparse.Namespace) -> None:
    """Make ``args.changes`` with the rs-sam Processing algorithm, in this process."""
    from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingFeedback

    class Feedback(QgsProcessingFeedback):
        """Print the algorithm's log lines (the CLI's warnings among them)."""

        def pushInfo(self, info: str) -> None:
            print(info, file=sys.__stderr__)  # stderr is redirected here

        pushWarning = pushInfo

        def reportError(self, error: str, fatalError: bool = False) -> None:
            print(error, file=sys.__stderr__)

    sys.path.append(PROCESSING_PLUGINS)
    import processing
    from processing.core.Processing import Processing

    from rs_sam.qgis_plugin.provider import RsSamProvider
    from rs_sam.qgis_plugin.specs import DETECT_CHANGE

    Processing.initialize()
    provider = RsSamProvider()  # keep the reference, or the algorithms vanish
    QgsApplication.processingRegistry().addProvider(provider)
    feedback = Feedback()
    params = {
        "A": str(args.a),
        "B": str(args.detect),
        "WEIGHTS": ("official", "random").index(args.weights),
        "POINTS_PER_SIDE": args.points_per_side,
        "MIN_AREA": args.min_area,
        "OVERWRITE": True,
        "OUTPUT": str(args.changes),
    }
    names = {p.name: p for p in DETECT_CHANGE.params}
    for item in args.param:
        name, _, value = item.partition("=")
        spec = names.get(name.strip().upper())
        if spec is None:
            fail(f"--param {item}: not a parameter of rs_sam:detect_change ({', '.join(names)})")
        # an enum takes the choice's index in QGIS 3.22; accept its name too
        params[spec.name] = spec.choices.index(value) if value in spec.choices else value
    if args.chip_size:
        params["CHIP_SIZE"] = args.chip_size
    if args.threshold is not None:
        params["THRESHOLD"] = args.threshold
    if args.weights == "random":  # the model is built in this process: make it repeatable
        import torch

        torch.manual_seed(args.seed)
    try:
        processing.run("rs_sam:detect_change", params, feedback=feedback)
    except QgsProcessingException as err:
        fail(f"rs_sam:detect_change failed: {err}")
    finally:
        QgsApplication.processingRegistry().removeProvider(provider)


def render(args: argparse.Namespace, shown: Path) -> int:
    """Draw ``shown`` and the polygons into ``args.png``; returns the polygon count."""
    from qgis.core import (
        QgsContrastEnhancement,
        QgsFillSymbol,
        QgsMapRendererParallelJob,
        QgsMapSettings,
        QgsMultiBandColorRenderer,
        QgsRasterLayer,
        QgsRasterMinMaxOrigin,
        QgsVectorLayer,
    )
    from qgis.PyQt.QtCore import QPoint, QRectF, QSize, Qt
    from qgis.PyQt.QtGui import QColor, QFont, QImage, QPainter

    raster = QgsRasterLayer(str(shown), shown.stem, "gdal")
    changes = QgsVectorLayer(str(args.changes), "changes", "ogr")
    if not raster.isValid():
        fail(f"{shown}: QGIS cannot read this raster")
    if not changes.isValid():
        fail(f"{args.changes}: QGIS cannot read this vector file")

    # RGB from bands 1-3 (NAIP: R, G, B, NIR), stretched to the 2-98 % cumulative cut
    # (uint8 and uint16 alike); one band: grey, same stretch.
    if raster.bandCount() >= 3:
        raster.setRenderer(QgsMultiBandColorRenderer(raster.dataProvider(), 1, 2, 3))
    raster.setContrastEnhancement(
        QgsContrastEnhancement.StretchToMinimumMaximum, QgsRasterMinMaxOrigin.CumulativeCut
    )
    symbol = QgsFillSymbol.createSimple(
        {
            "color": "0,0,0,0",
            "outline_color": args.color,
            "outline_width": "0.6",
            "outline_width_unit": "MM",
            "joinstyle": "round",
        }
    )
    changes.renderer().setSymbol(symbol)
    count = changes.featureCount()

    extent = raster.extent()
    height = max(1, round(args.width * extent.height() / extent.width()))
    settings = QgsMapSettings()
    settings.setLayers([changes, raster])  # top first
    settings.setDestinationCrs(raster.crs())
    settings.setExtent(extent)
    settings.setOutputSize(QSize(args.width, height))
    settings.setBackgroundColor(QColor("white"))
    settings.setFlag(QgsMapSettings.Antialiasing, True)
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()

    # A one-line caption in the lower left corner.
    caption = f"{count} change polygons"
    if args.weights == "random":
        caption += " · random weights (not real change)"
    painter = QPainter(image)
    painter.setRenderHint(QPainter.Antialiasing)
    painter.setFont(QFont("DejaVu Sans", max(9, args.width // 80)))
    box = painter.fontMetrics().boundingRect(caption).adjusted(-6, -4, 6, 4)
    box.moveBottomLeft(image.rect().bottomLeft() + QPoint(8, -8))
    painter.fillRect(box, QColor(255, 255, 255, 210))
    painter.setPen(QColor("black"))
    painter.drawText(QRectF(box), Qt.AlignCenter, caption)
    painter.end()

    if args.palette:
        image = image.convertToFormat(QImage.Format_Indexed8, Qt.DiffuseDither)

    # Atomic write: a temporary name beside the PNG, then a rename.
    tmp = args.png.with_name(f".{args.png.name}.{os.getpid()}.tmp")
    try:
        if not image.save(str(tmp), "PNG"):
            fail(f"{args.png}: cannot write the PNG")
        os.replace(tmp, args.png)
    finally:
        tmp.unlink(missing_ok=True)
    del job, settings, raster, changes
    return count


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    shown = check_args(args)
    args.png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rs-sam-qgis-") as config:
        os.environ.setdefault("QGIS_CUSTOM_CONFIG_PATH", config)  # not the user's profile
        os.environ.setdefault("XDG_RUNTIME_DIR", config)
        from qgis.core import QgsApplication

        QgsApplication.setPrefixPath("/usr", True)
        app = QgsApplication([], False)
        app.initQgis()
        if not args.changes.exists():
            detect(args)
        elif args.detect is not None:
            print(f"{args.changes} exists: not detecting again (delete it to re-run)")
        count = render(args, shown)
        gc.collect()  # no layer may outlive exitQgis (segfault at exit)
        app.exitQgis()
    print(f"{args.png}: {count} change polygons over {shown.name}")


if __name__ == "__main__":
    main()
