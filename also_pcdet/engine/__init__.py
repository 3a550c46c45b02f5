"""Training, checkpoints and export."""
