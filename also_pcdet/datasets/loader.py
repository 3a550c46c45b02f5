"""Dataset + resumable sampler + DataLoader, wired the way the trainer expects."""
import torch
import torch.utils.data

from .sampler import ResumableSampler
from .sweep_dataset import SweepDataset


def _single_thread_worker(_):
    torch.set_num_threads(1)


def build_dataloader(dataset_cfg, batch_size: int, workers: int, training: bool, seed: int = 0,
                     rank: int = 0, world_size: int = 1, root_path=None):
    """Return (dataset, loader); `loader.sampler` is a ResumableSampler sharded over `world_size`."""
    dataset = SweepDataset(dataset_cfg, training=training, root_path=root_path, seed=seed)
    if len(dataset) == 0:
        raise ValueError(f'no sweeps listed for split {dataset_cfg.DATA_SPLIT[dataset.mode]!r} under {dataset.root_path}')
    sampler = ResumableSampler(len(dataset), shuffle=training, seed=seed, rank=rank, world_size=world_size)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=dataset.collate_batch,
        pin_memory=torch.cuda.is_available(), worker_init_fn=_single_thread_worker, drop_last=False,
        persistent_workers=workers > 0)   # workers (and their voxel hash tables) live across epochs
    return dataset, loader
