"""Epochs drawn from several sources by weight: seeded, sharded over ranks, resumable mid-epoch."""
import math
from collections import Counter

import torch
import torch.utils.data


def quotas(num_items: int, weights) -> list:
    """Draws per source in an epoch of `num_items`: num_items * w_s / sum(w), rounded down, the rest given one
    each to the largest remainders (ties: the earlier source). They sum to num_items."""
    exact = [num_items * w / sum(weights) for w in weights]
    counts = [int(math.floor(e)) for e in exact]
    for s in sorted(range(len(weights)), key=lambda s: (counts[s] - exact[s], s))[:num_items - sum(counts)]:
        counts[s] += 1
    return counts


class WeightedSourceSampler(torch.utils.data.Sampler):
    """Dataset indices (source offset + sample index) for MultiSourceDataset. Epoch e (seed, e) holds exactly
    `quotas(num_items, weights)` draws of each source: the first ones of fresh permutations of that source's
    sweeps (a new permutation each time a source is used up, so no sweep repeats before all were drawn), in a
    shuffled order. As ResumableSampler: padded to a multiple of the world size, split rank::world_size, and
    `set_epoch(epoch, start)` skips this rank's first `start` indices."""

    def __init__(self, lengths, weights, seed: int, num_items: int = None, rank: int = 0, world_size: int = 1):
        if len(lengths) != len(weights) or not lengths or min(lengths) < 1:
            raise ValueError(f'every source needs sweeps and a weight: lengths {lengths}, weights {weights}')
        self.lengths, self.weights, self.seed = list(lengths), [float(w) for w in weights], int(seed)
        self.offsets = [sum(self.lengths[:s]) for s in range(len(self.lengths))]
        self.num_items = int(num_items or sum(self.lengths))
        self.rank, self.world_size = rank, world_size
        self.per_rank = math.ceil(self.num_items / world_size)
        self.epoch, self.start = 0, 0
        self._epoch_counts = {}

    def set_epoch(self, epoch: int, start: int = 0):
        self.epoch, self.start = int(epoch), int(start)

    def epoch_order(self, epoch: int) -> list:
        """Every rank's indices of `epoch`, before the split (padded to per_rank * world_size)."""
        gen = torch.Generator().manual_seed(self.seed * 100003 + int(epoch))
        draws = []
        for length, offset, count in zip(self.lengths, self.offsets, quotas(self.num_items, self.weights)):
            picks = []
            while len(picks) < count:
                picks += torch.randperm(length, generator=gen).tolist()
            draws += [offset + i for i in picks[:count]]
        order = [draws[i] for i in torch.randperm(len(draws), generator=gen).tolist()]
        total = self.per_rank * self.world_size
        return (order * math.ceil(total / len(order)))[:total]

    def source_of(self, index: int) -> int:
        return max(s for s, offset in enumerate(self.offsets) if offset <= index)

    def drawn_per_source(self, epochs: int) -> list:
        """Sweeps drawn from each source over epochs 0 .. epochs - 1, all ranks together (padding included)."""
        for epoch in range(epochs):
            if epoch not in self._epoch_counts:
                self._epoch_counts[epoch] = Counter(self.source_of(i) for i in self.epoch_order(epoch))
        return [sum(self._epoch_counts[e][s] for e in range(epochs)) for s in range(len(self.lengths))]

    def __iter__(self):
        return iter(self.epoch_order(self.epoch)[self.rank::self.world_size][self.start:])

    def __len__(self):
        return max(self.per_rank - self.start, 0)
