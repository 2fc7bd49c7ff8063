"""Label values shared by every dataset, loss and metric."""

#: Label value of pixels that count for nothing (no loss, no metric): outside a raster,
#: under nodata, unlabelled classes, uncertain objects.
IGNORE = 255
