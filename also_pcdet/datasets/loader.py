"""Dataset + resumable sampler + DataLoader, wired the way the trainer expects; workers that die with their parent."""
import ctypes
import functools
import logging
import os
import signal
import sys
import threading
import time

import torch
import torch.utils.data

from ..errors import RunError
from .multi_source import MultiSourceDataset
from .sampler import ResumableSampler
from .source_sampler import WeightedSourceSampler
from .sweep_dataset import SweepDataset

PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_CHECK_S = 1.0


def die_with_parent(parent_pid: int):
    """Make this worker process end when its parent `parent_pid` does, however the parent ends (SIGKILL, an OOM
    kill, SIGTERM): without it the workers of a killed run live on, blocked writing into a pipe nobody reads.
    On Linux the kernel sends SIGKILL when the thread that forked this process exits (PR_SET_PDEATHSIG; loader
    workers are forked by the thread iterating the loader, the main thread in the tools); everywhere a daemon
    thread checks every PARENT_CHECK_S that the parent is still `parent_pid` (an orphan is re-parented) and
    ends the process otherwise. SIGTERM gets its default action back (the tools' handler is inherited)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith('linux'):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent was gone before prctl
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name='parent-watch', daemon=True).start()


def _watch_parent(parent_pid: int):
    while os.getppid() == parent_pid:
        time.sleep(PARENT_CHECK_S)
    os._exit(1)


def _init_worker(parent_pid: int, _worker_id: int):
    torch.set_num_threads(1)
    die_with_parent(parent_pid)


def require_sweeps(dataset: SweepDataset, where: str):
    """RunError naming `where` when `dataset` lists no sweep; a warning for what its split lists but gives none."""
    unread = dataset.source.unread_summary()
    if len(dataset) == 0:
        raise RunError(f'no sweeps listed for {where}' + (f': {unread}' if unread else ''))
    if unread:  # the run's logger (tools/train.py) writes it to the log file too
        logging.getLogger('also_pcdet').warning(f'{where}: {unread}')


def build_dataloader(dataset_cfg, batch_size: int, workers: int, training: bool, seed: int = 0,
                     rank: int = 0, world_size: int = 1, root_path=None):
    """Return (dataset, loader); `loader.sampler` is sharded over `world_size` and resumable mid-epoch: a
    ResumableSampler, or with DATA_CONFIG.SOURCES (a MultiSourceDataset) in training a WeightedSourceSampler
    drawing the sources by WEIGHT (SWEEPS_PER_EPOCH per epoch, default all their sweeps); validation reads every
    listed sweep once."""
    if dataset_cfg.get('SOURCES'):
        dataset = MultiSourceDataset(dataset_cfg, training=training, seed=seed)
        for source in dataset.sources:
            require_sweeps(source, f'DATA_CONFIG.SOURCES {source.name}: split '
                                   f'{source.dataset_cfg.DATA_SPLIT[source.mode]!r} under {source.root_path}')
    else:
        dataset = SweepDataset(dataset_cfg, training=training, root_path=root_path, seed=seed)
        require_sweeps(dataset, f'split {dataset_cfg.DATA_SPLIT[dataset.mode]!r} under {dataset.root_path}')
    if training and dataset_cfg.get('SOURCES'):
        sampler = WeightedSourceSampler(dataset.lengths, dataset.weights, seed, dataset_cfg.get('SWEEPS_PER_EPOCH'),
                                        rank=rank, world_size=world_size)
    else:
        sampler = ResumableSampler(len(dataset), shuffle=training, seed=seed, rank=rank, world_size=world_size)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=dataset.collate_batch,
        pin_memory=torch.cuda.is_available(), worker_init_fn=functools.partial(_init_worker, os.getpid()),
        drop_last=False, persistent_workers=workers > 0)   # workers (and their voxel hash tables) live across epochs
    return dataset, loader
