"""Lyft Level 5 lidar `.bin` files and OpenPCDet custom-dataset `.npy` point clouds."""
import numpy as np

from .errors import SweepError, refuse_special

LYFT_FIELDS = 5  # x, y, z, intensity (a constant 100 in every released file), a channel field (unused)
LYFT_INTENSITY = 100.0


def read_lyft_lidar(path) -> np.ndarray:
    """(N, 4) float32 x, y, z, intensity / 100 in the lidar frame. Like OpenPCDet, a file whose size is not a
    whole number of 5-float records (some released files are cut short) is read up to its last whole record."""
    refuse_special(path)
    try:
        raw = np.fromfile(path, dtype=np.float32)
    except OSError as err:
        raise SweepError(path, f'cannot read: {err.strerror or err}') from err
    if raw.size < LYFT_FIELDS:
        raise SweepError(path, f'empty sweep ({raw.size * 4} bytes)')
    points = raw[:raw.size - raw.size % LYFT_FIELDS].reshape(-1, LYFT_FIELDS)[:, :4].copy()
    points[:, 3] /= LYFT_INTENSITY
    return points


def read_custom_npy(path, num_features: int) -> np.ndarray:
    """An OpenPCDet custom-dataset point cloud: a float (N, >= num_features) `.npy` array, first columns used."""
    refuse_special(path)
    try:
        raw = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise SweepError(path, f'cannot load .npy: {err}') from err
    if not isinstance(raw, np.ndarray) or raw.ndim != 2 or raw.shape[1] < num_features or raw.dtype.kind != 'f':
        raise SweepError(path, f'expected a float (N, {num_features}) array, got {getattr(raw, "dtype", type(raw))} '
                               f'{getattr(raw, "shape", "")}')
    return raw[:, :num_features].astype(np.float32)
