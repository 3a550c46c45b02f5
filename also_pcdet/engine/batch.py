"""What a batch holds (only what the model reads) and moving it onto a device as tensors (OpenPCDet's
load_data_to_gpu)."""
import functools

import numpy as np
import torch

from ..datasets.sweep_dataset import SweepDataset
from ..models.batch_inputs import model_reads_points

INTEGER_KEYS = ('voxel_coords', 'voxel_num_points')
HOST_KEYS = ('frame_id', 'skipped', 'batch_size')


def batch_to_device(batch: dict, device) -> dict:
    """Float arrays become float32 tensors, coordinates int32; names and counts stay on the host."""
    out = {}
    for key, value in batch.items():
        if key in HOST_KEYS or not isinstance(value, np.ndarray):
            out[key] = value
        elif key in INTEGER_KEYS:
            out[key] = torch.from_numpy(value).to(device=device, dtype=torch.int32)
        else:
            out[key] = torch.from_numpy(value).to(device=device, dtype=torch.float32)
    return out


def collate_for(loader, model):
    """Make `loader` collate only what `model` reads: no `points` (neither stacked nor copied to the
    device) when no module reads them. Call before iterating it: workers take the collate function when
    they start, and persistent ones keep it."""
    loader.collate_fn = functools.partial(SweepDataset.collate_batch, with_points=model_reads_points(model))
    return loader
