"""Shared fixtures: synthetic KITTI sweeps written once per session, and a small CPU-sized config."""
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from also_pcdet import pcdet_seam  # noqa: E402
from also_pcdet.config import cfg_from_list, cfg_from_yaml_file  # noqa: E402
from also_pcdet.datasets.synthetic import write_kitti_object  # noqa: E402
from also_pcdet.spconv_compat import single_threaded_on_cpu  # noqa: E402

# Errors OpenPCDet's own modules raise on a CPU-only machine with a current numpy (its DynMeanVFE / DynPillarVFE
# call .cuda() in __init__; BaseBEVBackbone uses np.int, removed in numpy 1.24, for upsample strides below 1).
OPENPCDET_LIMITS = ('Torch not compiled with CUDA enabled', "module 'numpy' has no attribute 'int'")


def openpcdet_limit(excinfo) -> str:
    """Why a test failed inside an installed OpenPCDet for one of OPENPCDET_LIMITS ('' otherwise)."""
    message = str(excinfo.value)
    in_pcdet = any('/pcdet/' in Path(entry.path).as_posix() for entry in excinfo.traceback)
    limit = next((text for text in OPENPCDET_LIMITS if text in message), '')
    return f'OpenPCDet itself cannot run this here: {limit}' if in_pcdet and limit else ''


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With OpenPCDet installed, its modules replace the fallbacks: a failure raised inside OpenPCDet's code for
    one of OPENPCDET_LIMITS is reported as a skip naming it (the same test passes with the fallback modules)."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.excinfo is not None and pcdet_seam.HAVE_PCDET:
        reason = openpcdet_limit(call.excinfo)
        if reason:
            report.outcome = 'skipped'
            report.longrepr = (str(item.path), item.location[1] or 0, reason)


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
