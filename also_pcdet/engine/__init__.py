"""Training, checkpoints and export; validation, linear probe and pictures."""
