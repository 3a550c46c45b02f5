"""Shared fixtures: synthetic KITTI sweeps written once per session, and a small CPU-sized config."""
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from also_pcdet.config import cfg_from_list, cfg_from_yaml_file  # noqa: E402
from also_pcdet.datasets.synthetic import write_kitti_object  # noqa: E402
from also_pcdet.spconv_compat import single_threaded_on_cpu  # noqa: E402

# A 25.6 x 25.6 m front box: the stock SECOND network, 4x fewer BEV cells than the demo.
TINY_OVERRIDES = [
    'DATA_CONFIG.POINT_CLOUD_RANGE', '[0,-12.8,-3,25.6,12.8,1]',
    'DATA_CONFIG.QUERIES.NUM_QUERIES', '2048',
    'DATA_CONFIG.VOXELIZATION.MAX_NUMBER_OF_VOXELS.train', '30000',
    'DATA_CONFIG.VOXELIZATION.MAX_NUMBER_OF_VOXELS.test', '30000',
    'OPTIMIZATION.BATCH_SIZE_PER_GPU', '2',
    'OPTIMIZATION.LOG_INTERVAL', '1',
]


@pytest.fixture(scope='session')
def synthetic_kitti(tmp_path_factory) -> Path:
    """Ten ray-cast sweeps in KITTI's 3D-object layout (8 train, 2 val)."""
    root = tmp_path_factory.mktemp('synthetic_kitti')
    write_kitti_object(root, num_sweeps=10, seed=0, val_every=5)
    return root


def tiny_cfg(data_path, *extra):
    """cfgs/also_pretrain.yaml shrunk for CPU tests, reading `data_path`."""
    cfg = cfg_from_yaml_file(REPO / 'cfgs' / 'also_pretrain.yaml')
    cfg_from_list(TINY_OVERRIDES + ['DATA_CONFIG.DATA_PATH', str(data_path)] + list(extra), cfg)
    return cfg


@pytest.fixture
def tiny_config(synthetic_kitti):
    return tiny_cfg(synthetic_kitti)


@pytest.fixture
def one_thread():
    """One torch thread for the test: spconv's CPU convolutions race on several (see spconv_compat)."""
    with single_threaded_on_cpu('cpu'):
        yield
