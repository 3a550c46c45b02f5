"""Moving a collated numpy batch_dict onto a device as tensors (OpenPCDet's load_data_to_gpu)."""
import numpy as np
import torch

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
