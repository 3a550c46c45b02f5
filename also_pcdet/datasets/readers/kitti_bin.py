"""KITTI-style float32 point records (`.bin`): KITTI velodyne, SemanticKITTI, nuScenes `.pcd.bin`."""
import numpy as np

from .errors import SweepError, refuse_special


def read_float32_records(path, num_fields: int) -> np.ndarray:
    """Read a flat float32 file as (N, num_fields); an empty file or one that is not whole records raises
    SweepError stating its real size."""
    refuse_special(path)
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise SweepError(path, f'cannot read: {err.strerror or err}') from err
    if raw.size == 0:
        raise SweepError(path, 'empty sweep (0 bytes)')
    if raw.size % (4 * num_fields):
        raise SweepError(path, f'truncated: {raw.size} bytes is not a multiple of {num_fields} float32 fields '
                               f'({num_fields * 4} bytes per point)')
    return raw.view(np.float32).reshape(-1, num_fields)
