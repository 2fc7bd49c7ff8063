"""Training losses: SAM-CD change, SSRS segmentation, and binary masks (LoRA, HQ-SAM)."""
