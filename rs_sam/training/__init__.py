"""Training: Lightning tasks, feature caching and checkpoints of trained heads."""
