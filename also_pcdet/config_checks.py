"""Checks that fail a bad config before training starts, naming the key or path."""
from pathlib import Path

import numpy as np

from .config import ConfigError


def check_config(cfg):
    """Raise ConfigError for a missing data path or a range the voxel size does not divide."""
    data = cfg.DATA_CONFIG
    pc_range = np.asarray(data.POINT_CLOUD_RANGE, dtype=np.float64)
    voxel = np.asarray(data.VOXEL_SIZE, dtype=np.float64)
    cells = (pc_range[3:] - pc_range[:3]) / voxel
    if np.any(np.abs(cells - np.round(cells)) > 1e-4) or np.any(cells < 1):
        raise ConfigError(f'DATA_CONFIG.POINT_CLOUD_RANGE {list(pc_range)} is not a whole number of '
                          f'DATA_CONFIG.VOXEL_SIZE {list(voxel)} cells: {list(cells)}')
    if not Path(data.DATA_PATH).exists():
        raise ConfigError(f'DATA_CONFIG.DATA_PATH {data.DATA_PATH!r} does not exist '
                          f'(generate synthetic sweeps with tools/make_synthetic.py, or point it at your data)')
