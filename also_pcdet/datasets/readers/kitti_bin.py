"""KITTI-style float32 point records (`.bin`): KITTI velodyne, SemanticKITTI, nuScenes `.pcd.bin`."""
import numpy as np

from .errors import SweepError


def read_float32_records(path, num_fields: int) -> np.ndarray:
    """Read a flat float32 file as (N, num_fields); a truncated or empty file raises SweepError."""
    try:
        raw = np.fromfile(path, dtype=np.float32)
    except OSError as err:
        raise SweepError(path, f'cannot read: {err.strerror or err}') from err
    if raw.size == 0:
        raise SweepError(path, 'empty sweep (0 bytes)')
    if raw.size % num_fields:
        raise SweepError(path, f'truncated: {raw.size * 4} bytes is not a multiple of '
                               f'{num_fields} float32 fields ({num_fields * 4} bytes per point)')
    return raw.reshape(-1, num_fields)
