"""A seeded, sharded, resumable epoch sampler (a DistributedSampler that can start mid-epoch)."""
import math

import torch
import torch.utils.data


class ResumableSampler(torch.utils.data.Sampler):
    """Each epoch is a permutation drawn from (seed, epoch), padded to a multiple of the world size and
    split rank::world_size. `set_epoch(epoch, start)` skips this rank's first `start` samples."""

    def __init__(self, num_items: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1):
        self.num_items, self.shuffle, self.seed = num_items, shuffle, int(seed)
        self.rank, self.world_size = rank, world_size
        self.per_rank = math.ceil(num_items / world_size)
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0):
        self.epoch, self.start = int(epoch), int(start)

    def __iter__(self):
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
            order = torch.randperm(self.num_items, generator=gen).tolist()
        else:
            order = list(range(self.num_items))
        total = self.per_rank * self.world_size
        order = (order * math.ceil(total / max(len(order), 1)))[:total]
        return iter(order[self.rank::self.world_size][self.start:])

    def __len__(self):
        return max(self.per_rank - self.start, 0)
