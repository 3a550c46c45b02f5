"""ONCE roof-lidar sweeps (`data/<sequence>/lidar_roof/<frame>.bin`), read without the ONCE devkit."""
import numpy as np

from .kitti_bin import read_float32_records

ONCE_FIELDS = 4  # x, y, z, intensity (0-255)


def read_once_lidar(path) -> np.ndarray:
    """(N, 4) float32 x, y, z, intensity / 255 in the roof lidar's frame (ONCE stores intensity 0-255;
    ALSO divides it by 255, as for nuScenes)."""
    points = read_float32_records(path, ONCE_FIELDS)
    points[:, 3] /= 255.0
    return points
