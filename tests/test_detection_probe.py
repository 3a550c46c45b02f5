"""Few-label detection probe: targets decode back to the boxes (AP 1), BatchNorm recalibration, and a few
training steps of both fine-tuning modes on the synthetic KITTI labels."""
import numpy as np
import pytest
import torch
from torch import nn

from also_pcdet.datasets import SweepDataset
from also_pcdet.engine.batchnorm import recalibrate_batchnorm
from also_pcdet.engine.box_metrics import car_metrics
from also_pcdet.engine.detection_probe import (BevGrid, flip_y, labelled_subset, load_frame,
                                               run_detection_probe)
from conftest import tiny_cfg


def test_targets_decode_to_the_boxes_and_score_ap_one(tiny_config):
    dataset = SweepDataset(tiny_config.DATA_CONFIG)
    grid = BevGrid(dataset)
    assert (grid.width, grid.height) == (64, 64)  # 25.6 m at 0.05 m voxels, stride 8
    boxes = np.array([[5.3, -2.1, -0.9, 4.2, 1.8, 1.5, 0.4], [17.9, 6.65, -0.8, 4.5, 1.9, 1.6, -2.9]])
    heatmap, cells, targets = grid.targets(boxes)
    assert heatmap.max() == 1.0 and np.count_nonzero(heatmap == 1.0) == 2
    logits = torch.logit(torch.from_numpy(heatmap).clamp(1e-4, 1 - 1e-4))
    regression = torch.zeros(8, grid.height * grid.width)
    regression[:, torch.from_numpy(cells)] = torch.from_numpy(targets).T
    decoded, scores = grid.decode(logits, regression.reshape(8, grid.height, grid.width))
    assert len(decoded) == 2 and np.allclose(scores, 1.0, atol=1e-3)
    order = np.argsort(decoded[:, 0])
    np.testing.assert_allclose(decoded[order], boxes, atol=1e-5)
    metrics = car_metrics([{'boxes': decoded, 'scores': scores, 'gt': boxes, 'ignore': np.zeros((0, 7))}])
    assert all(v == pytest.approx(1.0) for v in metrics.values())
    # the same decode, 1 m off along x: BEV IoU under 0.7 for the 4.2 m car, still within 2 m
    shifted = decoded + [1.0, 0, 0, 0, 0, 0, 0]
    metrics = car_metrics([{'boxes': shifted, 'scores': scores, 'gt': boxes, 'ignore': np.zeros((0, 7))}])
    assert metrics['bev_ap_0.7'] == 0.0 and metrics['dist_ap'] == pytest.approx(0.5)


def test_batchnorm_recalibration_gives_the_data_statistics():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    batches = [torch.randn(16, 3) * 2 + 1 for _ in range(3)]
    weight = net[0].weight.clone()
    assert recalibrate_batchnorm(net, net, batches) == 1
    with torch.no_grad():
        features = net[0](torch.cat(batches))
    torch.testing.assert_close(net[1].running_mean, features.mean(0))
    batch_vars = torch.stack([net[0](b).var(0) for b in batches]).detach()  # unbiased, per batch, averaged
    torch.testing.assert_close(net[1].running_var, batch_vars.mean(0))
    assert not net.training and net[1].momentum == 0.1 and torch.equal(net[0].weight, weight)


def test_frames_flip_and_subsets_are_seeded(synthetic_kitti):
    cfg = tiny_cfg(synthetic_kitti)
    dataset = SweepDataset(cfg.DATA_CONFIG)
    frame = load_frame(dataset, 0)
    assert frame['points'].shape[1] == 4 and (frame['points'][:, 0] >= 0).all()
    assert len(frame['gt']) + len(frame['ignore']) > 0
    flipped = flip_y(frame)
    np.testing.assert_array_equal(flipped['points'][:, 1], -frame['points'][:, 1])
    np.testing.assert_array_equal(flipped['gt'][:, 6], -frame['gt'][:, 6])
    assert labelled_subset(80, 0.05, 0).tolist() == labelled_subset(80, 0.05, 0).tolist()
    assert len(labelled_subset(80, 0.05, 0)) == 4 and len(labelled_subset(8, 0.01, 0)) == 1


@pytest.mark.slow
@pytest.mark.parametrize('finetune', ['all', 'head'])
def test_probe_trains_a_few_steps(synthetic_kitti, finetune):
    cfg = tiny_cfg(synthetic_kitti)
    result = run_detection_probe(cfg.MODEL, cfg.DATA_CONFIG, None, seed=4, label_fraction=0.1, iterations=2,
                                 eval_every=1, max_val=1, finetune=finetune, bn_sweeps=1, progress=False)
    assert sorted(result['curve']) == [1, 2] and result['final'] == result['curve'][2]
    assert len(result['loss']) == 2 and np.isfinite(result['loss']).all()
    assert result['labelled_sweeps'] == 1 and result['val_sweeps'] == 1
    for value in result['final'].values():
        assert np.isnan(value) or 0.0 <= value <= 1.0
    assert result['loss'][0] != result['loss'][1]  # it trained on different batches / weights
