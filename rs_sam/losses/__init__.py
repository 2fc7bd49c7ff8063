"""Training losses: SAM-CD change losses and the SSRS segmentation losses."""
