"""Shared fixtures: synthetic KITTI sweeps written once per session, and a small CPU-sized config. Under
pytest-xdist (tools/test.sh) each worker gets its share of the torch threads, and slow tests start first."""
import fcntl
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

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


def pytest_configure(config):
    """An xdist worker gets an equal share of the cores for torch's threads (at least one): N workers each on torch's
    default of N threads oversubscribe the machine N times, and OpenMP's waiting threads then cost several times
    the work. A test about several threads sets them itself."""
    workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', 0))
    if workers:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(config, items):
    """Slow tests first (order otherwise kept). tools/test.sh hands out whole modules (`--dist loadfile
    --no-loadscope-reorder`: a module's fixtures are built by one worker) in the order of their first test, so the
    modules with long tests start first instead of leaving one worker busy at the end while the other idles."""
    items.sort(key=lambda item: item.get_closest_marker('slow') is None)


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


def written_once(tmp_path_factory, name, write) -> Path:
    """<run's temp folder>/<name>, filled by `write(path)` once per test run: xdist workers share the folder (the
    first to take the lock writes it, the others wait for it), so tests must treat it as read-only."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get('PYTEST_XDIST_WORKER'):
        base = base.parent  # the run's folder, above each worker's own
    root, done = base / name, base / f'{name}.done'
    with open(base / f'{name}.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)  # a writer that failed half-way
            write(root)
            done.touch()
    return root


@pytest.fixture(scope='session')
def synthetic_kitti(tmp_path_factory) -> Path:
    """Ten ray-cast sweeps in KITTI's 3D-object layout (8 train, 2 val); read-only (copy it to change it)."""
    return written_once(tmp_path_factory, 'synthetic_kitti',
                        lambda root: write_kitti_object(root, num_sweeps=10, seed=0, val_every=5))


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
