"""Loader work kept out of the training step: persistent workers that still follow the epoch, and no
`points` array when the model does not read it (same results either way)."""
import numpy as np
import torch
from torch import nn

from also_pcdet.datasets import build_dataloader
from also_pcdet.engine.batch import batch_to_device, collate_for
from also_pcdet.engine.optimization import build_optimizer
from also_pcdet.engine.trainer import Trainer
from also_pcdet.models import build_network
from also_pcdet.models.batch_inputs import model_reads_points, module_reads_points
from conftest import tiny_cfg

FOUR_SWEEPS = ['DATA_CONFIG.SAMPLE_INTERVAL.train', '2', 'DATA_CONFIG.QUERIES.NUM_QUERIES', '256']


def epochs_of(loader, dataset, epochs=2):
    out = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        out.append([{key: batch[key] for key in ('frame_id', 'queries', 'voxels')} for batch in loader])
    return out


def test_persistent_workers_follow_the_epoch(synthetic_kitti):
    """Two epochs through one persistent worker give exactly the batches of the main process, and the
    second epoch draws new queries (the worker saw set_epoch)."""
    cfg = tiny_cfg(synthetic_kitti, *FOUR_SWEEPS)
    dataset, loader = build_dataloader(cfg.DATA_CONFIG, batch_size=2, workers=1, training=True, seed=3)
    in_process, plain = build_dataloader(cfg.DATA_CONFIG, batch_size=2, workers=0, training=True, seed=3)
    assert loader.persistent_workers
    ours, expected = epochs_of(loader, dataset), epochs_of(plain, in_process)
    for epoch_ours, epoch_expected in zip(ours, expected):
        assert len(epoch_ours) == len(epoch_expected) == 2
        for got, want in zip(epoch_ours, epoch_expected):
            assert all(np.array_equal(got[key], want[key]) for key in want)
    first = {f: q for batch in ours[0] for f, q in zip(batch['frame_id'], np.split(batch['queries'], 2))}
    second = {f: q for batch in ours[1] for f, q in zip(batch['frame_id'], np.split(batch['queries'], 2))}
    assert first.keys() == second.keys() and not any(np.array_equal(first[f], second[f]) for f in first)


class ReadsPoints(nn.Module):
    def forward(self, batch_dict):
        batch_dict['voxel_features'] = batch_dict['points'][:, 1:]
        return batch_dict


class Declares(ReadsPoints):
    READS_POINTS = False


def test_points_are_collated_only_for_a_model_that_reads_them(synthetic_kitti, one_thread):
    cfg = tiny_cfg(synthetic_kitti, *FOUR_SWEEPS)
    dataset, loader = build_dataloader(cfg.DATA_CONFIG, batch_size=2, workers=0, training=True, seed=0)
    torch.manual_seed(0)
    model = build_network(cfg.MODEL, dataset)
    assert not model_reads_points(model)                      # MeanVFE reads voxels
    assert module_reads_points(ReadsPoints()) and not module_reads_points(Declares())
    model.module_list.append(ReadsPoints())
    assert model_reads_points(model)
    model.module_list.pop()

    with_points = next(iter(loader))
    Trainer(model, build_optimizer(model, cfg.OPTIMIZATION), loader, cfg.OPTIMIZATION, ckpt_dir=None,
            device=torch.device('cpu'))
    without = next(iter(loader))
    assert 'points' in with_points and 'points' not in without
    assert set(with_points) - set(without) == {'points'}
    model.eval()
    with torch.no_grad():
        expected, _ = model(batch_to_device(with_points, torch.device('cpu')))
        got, _ = model(batch_to_device(without, torch.device('cpu')))
    for key in ('occupancy_logits', 'intensity', 'query_index'):
        assert torch.equal(got[key], expected[key]), key
    assert collate_for(loader, model) is loader
