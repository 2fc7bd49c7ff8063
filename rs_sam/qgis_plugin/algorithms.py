"""Processing algorithms built from :mod:`.specs`: parameters in, option values out.

The values (keyed by option name) go to the library API in QGIS's Python, or become an
``rs-sam`` command in another Python (:mod:`.runner`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsProviderRegistry,
)

from .runner import RunFailed, RunSettings, run_command
from .specs import AlgorithmSpec, Param

#: Vector formats the CLI writes and QGIS 3.22 reads.
VECTOR_EXTENSIONS = ("gpkg", "geojson", "shp")
#: Formats the prompts layer is handed over in (others are exported to GeoPackage first).
PROMPT_FORMATS = ["gpkg", "shp", "geojson"]


def make_parameter(param: Param) -> QgsProcessingParameterDefinition:
    """The QGIS parameter for one :class:`Param`."""
    name, text, optional = param.name, param.description, param.optional
    if param.kind == "raster":
        made: QgsProcessingParameterDefinition = QgsProcessingParameterRasterLayer(
            name, text, optional=optional
        )
    elif param.kind == "features":
        types = [QgsProcessing.TypeVectorPoint, QgsProcessing.TypeVectorPolygon]
        made = QgsProcessingParameterFeatureSource(name, text, types, optional=optional)
    elif param.kind == "file":
        made = QgsProcessingParameterFile(name, text, optional=optional)
    elif param.kind == "bool":
        made = QgsProcessingParameterBoolean(name, text, defaultValue=param.default)
    elif param.kind in ("int", "float"):
        number = (
            QgsProcessingParameterNumber.Integer
            if param.kind == "int"
            else QgsProcessingParameterNumber.Double
        )
        made = QgsProcessingParameterNumber(
            name, text, number, defaultValue=param.default, optional=optional
        )
    elif param.kind == "enum":
        made = QgsProcessingParameterEnum(
            name, text, list(param.choices), defaultValue=param.choices.index(param.default)
        )
    elif param.kind == "string":
        made = QgsProcessingParameterString(
            name, text, defaultValue=param.default, optional=optional
        )
    elif param.kind == "vector_out":
        made = QgsProcessingParameterVectorDestination(
            name, text, QgsProcessing.TypeVectorPolygon, optional=optional
        )
    elif param.kind == "folder_out":
        made = QgsProcessingParameterFolderDestination(name, text, optional=optional)
    else:  # raster_out
        made = QgsProcessingParameterRasterDestination(
            name, text, optional=optional, createByDefault=not optional
        )
    if param.advanced:
        made.setFlags(made.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return made


def _is_unset(value: Any) -> bool:
    """None, QVariant NULL or an empty string."""
    if value is None or value == "":
        return True
    is_null = getattr(value, "isNull", None)
    return bool(is_null()) if callable(is_null) else False


class RsSamAlgorithm(QgsProcessingAlgorithm):
    """One ``rs-sam`` command as a Processing algorithm."""

    def __init__(self, spec: AlgorithmSpec, run_settings: Callable[[], RunSettings]) -> None:
        super().__init__()
        self.spec = spec
        self.run_settings = run_settings

    def createInstance(self) -> RsSamAlgorithm:
        return RsSamAlgorithm(self.spec, self.run_settings)

    def name(self) -> str:
        return self.spec.name

    def displayName(self) -> str:
        return self.spec.display_name

    def shortHelpString(self) -> str:
        return (
            f"{self.spec.help}\n\nRuns `rs-sam {self.spec.command}`; the parameters are its "
            "options with the same defaults."
        )

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        for param in self.spec.params:
            self.addParameter(make_parameter(param))

    def processAlgorithm(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> dict[str, Any]:
        values, outputs = self.values(parameters, context, feedback)
        try:
            run_command(self.spec.name, values, feedback, self.run_settings())
        except RunFailed as err:
            raise QgsProcessingException(str(err)) from err
        return outputs

    # ------------------------------------------------------------------ option values
    def values(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The option values (by option name; None = unset) for these parameter values,
        and the outputs' paths."""
        values: dict[str, Any] = {}
        outputs: dict[str, str] = {}
        for param in self.spec.params:
            value = self._value(param, parameters, context, feedback)
            if value is None:
                continue
            if param.kind.endswith("_out"):
                outputs[param.name] = value
            values[param.key] = value
        return values, outputs

    def _value(
        self,
        param: Param,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> Any:
        """The option value of one parameter, or None to leave it unset."""
        name, kind = param.name, param.kind
        if kind == "raster":
            layer = self.parameterAsRasterLayer(parameters, name, context)
            return None if layer is None and param.optional else _raster_path(layer, param)
        if kind == "bool":
            return self.parameterAsBoolean(parameters, name, context)
        if kind == "enum":
            return param.choices[self.parameterAsEnum(parameters, name, context)]
        if kind == "folder_out":
            return self.parameterAsFileOutput(parameters, name, context) or None
        if kind.endswith("_out"):
            path = self.parameterAsOutputLayer(parameters, name, context)
            return _output_path(path, param) if path else None
        if _is_unset(parameters.get(name)) and param.default is None:
            return None  # QGIS has checked that mandatory parameters are set
        if kind == "features":
            return self.parameterAsCompatibleSourceLayerPath(
                parameters, name, context, PROMPT_FORMATS, "gpkg", feedback
            )
        if kind == "file":
            return self.parameterAsFile(parameters, name, context)
        if kind == "int":
            return self.parameterAsInt(parameters, name, context)
        if kind == "float":
            return self.parameterAsDouble(parameters, name, context)
        return self.parameterAsString(parameters, name, context)


def _raster_path(layer: Any, param: Param) -> str:
    """The file behind a raster layer; rs-sam reads files (GeoTIFF, COG, VRT) only."""
    if layer is None:
        raise QgsProcessingException(f"{param.description}: no raster layer given; choose one")
    if layer.providerType() != "gdal":
        raise QgsProcessingException(
            f"{param.description}: layer '{layer.name()}' is not a raster file "
            f"({layer.providerType()}); export it as GeoTIFF first"
        )
    path = QgsProviderRegistry.instance().decodeUri("gdal", layer.source()).get("path")
    return str(path or layer.source())


def _output_path(path: str, param: Param) -> str:
    """A file path for an output; rs-sam writes files, not database tables."""
    if path.startswith(("ogr:", "memory:", "postgis:", "postgres:", "spatialite:")):
        raise QgsProcessingException(
            f"{param.description}: rs-sam writes files; choose 'Save to File...' "
            f"({', '.join(VECTOR_EXTENSIONS)} for vectors, tif for rasters)"
        )
    return path
