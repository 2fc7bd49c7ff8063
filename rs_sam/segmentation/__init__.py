"""Segmentation: SAM objects (automatic and prompted) and trained semantic segmentation."""
