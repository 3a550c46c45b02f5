"""Sweeps to batches: readers per layout, ALSO queries, augmentation, voxelization, collation."""
from .loader import build_dataloader
from .sweep_dataset import SweepDataset

__all__ = ['SweepDataset', 'build_dataloader']
