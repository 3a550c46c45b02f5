"""Run tools/train.py (or tools/dist_train.sh) as a real subprocess on the tiny config, and read what it wrote."""
import os
import socket
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from tensorboardX.proto.event_pb2 import Event

from also_pcdet.datasets.readers.tfrecord_io import index_tfrecord, read_record
from conftest import REPO, TINY_OVERRIDES

# A 6.4 x 6.4 m box (16 x 16 BEV cells, ~5k voxels a sweep) and 512 queries: about 0.2 s per sweep and step on
# one CPU thread (0.5 s for the 12.8 m box used before).
FAST_OVERRIDES = TINY_OVERRIDES + [
    'DATA_CONFIG.POINT_CLOUD_RANGE', '[0,-3.2,-3,6.4,3.2,1]',
    'DATA_CONFIG.QUERIES.NUM_QUERIES', '512',
]
CFG = 'cfgs/also_pretrain.yaml'


def train_args(data, out_root, *flags, sets=()):
    """Arguments for tools/train.py: the tiny config on `data`, output under `out_root`, no loader workers."""
    return ['--cfg_file', CFG, '--workers', '0', '--output_root', str(out_root), *map(str, flags),
            '--set', *FAST_OVERRIDES, 'DATA_CONFIG.DATA_PATH', str(data), *map(str, sets)]


def free_port() -> int:
    """A TCP port no socket on this machine holds now (the kernel's pick, so parallel test workers get different ones)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def cli_env(one_thread=True) -> dict:
    """This venv's python and torchrun first on PATH, the checkout importable; one torch thread per process (the cores are shared)
    unless `one_thread` is False (then torch's default, which train.py lowers to 1 on the CPU)."""
    env = dict(os.environ, PYTHON=sys.executable,
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]),
               PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get('PATH', ''))
    env.pop('OMP_NUM_THREADS', None)
    return dict(env, OMP_NUM_THREADS='1') if one_thread else env


def train_command(args):
    return [sys.executable, str(REPO / 'tools' / 'train.py'), *args]


def run_train(args, timeout=300, check=True, one_thread=True) -> subprocess.CompletedProcess:
    """Run tools/train.py to completion; with `check`, a non-zero exit fails with its output."""
    proc = subprocess.run(train_command(args), cwd=REPO, env=cli_env(one_thread), capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode:
        raise AssertionError(f'train.py exited {proc.returncode}:\n{proc.stderr[-4000:]}')
    return proc


def run_dir(out_root, extra_tag='default') -> Path:
    """output/<cfg name>/<extra_tag>/ for the tiny config (OpenPCDet's layout)."""
    return Path(out_root) / Path(CFG).stem / extra_tag


def scalars(tb_dir) -> dict:
    """{tag: [(step, value), ...]} from every tensorboardX event file in `tb_dir`, CRCs checked."""
    found = defaultdict(list)
    for path in sorted(Path(tb_dir).glob('events.out.tfevents.*')):
        for offset in index_tfrecord(path):
            event = Event.FromString(read_record(path, offset))
            for value in event.summary.value:
                found[value.tag].append((event.step, value.simple_value))
    return dict(found)


def same_tensors(a: dict, b: dict) -> bool:
    """Same keys and bit-identical tensors."""
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and a[k].equal(b[k]) for k in a)


def same_optimizer_state(a: dict, b: dict) -> bool:
    """Bit-identical per-parameter optimizer state (Adam moments, step counts) and the same groups."""
    return a['param_groups'] == b['param_groups'] and a['state'].keys() == b['state'].keys() and all(
        same_tensors(a['state'][i], b['state'][i]) for i in a['state'])
