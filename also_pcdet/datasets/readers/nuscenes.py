"""nuScenes LIDAR_TOP sweeps (`samples/` and `sweeps/` `.pcd.bin`), read without the nuscenes-devkit."""
import numpy as np

from .kitti_bin import read_float32_records

NUSCENES_FIELDS = 5  # x, y, z, intensity (0-255), ring index (0-31)


def read_nuscenes_lidar(path) -> np.ndarray:
    """(N, 5) float32 x, y, z, intensity / 255, timestamp 0 in the LIDAR_TOP frame.

    The ring index is dropped; timestamp is the time lag OpenPCDet appends when it merges
    sweeps, 0 for a single sweep."""
    raw = read_float32_records(path, NUSCENES_FIELDS)
    points = raw.copy()
    points[:, 3] /= 255.0
    points[:, 4] = 0.0
    return points
