"""Few-label detection probe: targets decode back to the boxes (AP 1), BatchNorm recalibration, a few training
steps of both fine-tuning modes on the synthetic KITTI labels (an evaluated iteration of a longer run is the shorter
run), and tools/det_probe.py's report: mean ± std per budget and the gap against the seed spread."""
import json
import sys

import numpy as np
import pytest
import torch
from torch import nn

from also_pcdet.datasets import SweepDataset
from also_pcdet.engine.batchnorm import recalibrate_batchnorm
from also_pcdet.engine.box_metrics import car_metrics
from also_pcdet.engine.detection_probe import (BevGrid, flip_y, labelled_subset, load_frame,
                                               run_detection_probe)
from conftest import REPO, tiny_cfg
from tools import det_probe

sys.path.insert(0, str(REPO / 'benchmarks'))
import label_efficiency  # noqa: E402


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
    if finetune == 'all':   # a shorter budget is the longer run's evaluation (constant LR, a batch per iteration)
        shorter = run_detection_probe(cfg.MODEL, cfg.DATA_CONFIG, None, seed=4, label_fraction=0.1, iterations=1,
                                      eval_every=1, max_val=1, finetune=finetune, progress=False)
        np.testing.assert_equal(shorter['final'], result['curve'][1])
        assert shorter['loss'] == result['loss'][:1]


def write_runs(out_dir, values: dict, fraction: float, labelled: int):
    """det_probe run files whose every metric at iteration `it` of `arm` and seed k is values[arm, it][k]."""
    (out_dir / 'runs').mkdir(parents=True)
    for arm in ('pretrained', 'scratch'):
        for seed in range(3):
            curve = {str(it): dict.fromkeys(det_probe.METRICS, values[arm, it][seed]) for it in (100, 200)}
            run = {'arm': arm, 'seed': seed, 'curve': curve, 'final': curve['200'], 'loss': [1.0, 0.5],
                   'labelled_sweeps': labelled, 'val_sweeps': 10, 'val_cars': 9, 'seconds': 1.0,
                   'settings': {'finetune': 'all', 'iterations': 200, 'eval_every': 100, 'label_fraction': fraction,
                                'batch_size': 2, 'lr': 1e-3}}
            (out_dir / 'runs' / f'{arm}_seed{seed}.json').write_text(json.dumps(run))


VALUES = {('pretrained', 100): [0.5, 0.6, 0.7], ('scratch', 100): [0.3, 0.4, 0.5],
          ('pretrained', 200): [0.60, 0.62, 0.70], ('scratch', 200): [0.58, 0.66, 0.65]}


def test_det_probe_report_states_each_budget_and_the_gap_against_the_seed_spread(tmp_path, capsys):
    write_runs(tmp_path, VALUES, 0.02, 6)
    summary = det_probe.main(['--cfg_file', str(REPO / 'cfgs' / 'also_pretrain_demo.yaml'), '--report_only',
                              '--iterations', '200', '--eval_every', '100', '--budgets', '100',
                              '--out_dir', str(tmp_path)])
    assert summary['pretrained']['at']['100']['bev_ap_0.5']['mean'] == pytest.approx(0.6)
    assert summary['pretrained']['at']['100']['bev_ap_0.5']['std'] == pytest.approx(0.1)        # ddof 1
    assert summary['scratch']['final']['dist_ap']['values'] == [0.58, 0.66, 0.65]
    report = (tmp_path / 'table.md').read_text()
    assert 'after 100 iterations:' in capsys.readouterr().out
    short, long = report.split('after 100 iterations:')[1].split('after 200 iterations:')
    assert '| ALSO pretrained | 3 | 0.600 ± 0.100 |' in short and '| random init | 3 | 0.400 ± 0.100 |' in short
    assert '- bev_ap_0.5: gap +0.200, seed spread 0.100: exceeds the spread; pretrained ahead on 3/3 seeds' in short
    assert '- bev_ap_0.5: gap +0.010, seed spread 0.053: within the spread; pretrained ahead on 2/3 seeds' in long
    assert (tmp_path / 'curves.png').read_bytes()[:4] == b'\x89PNG'
    with pytest.raises(SystemExit):
        det_probe.parse_args(['--cfg_file', 'x.yaml', '--iterations', '200', '--eval_every', '100', '--budgets', '150'])


def test_label_efficiency_table_and_picture_over_fractions(tmp_path):
    write_runs(tmp_path / 'small', VALUES, 0.02, 6)
    write_runs(tmp_path / 'large', {key: [v + 0.1 for v in value] for key, value in VALUES.items()}, 0.1, 30)
    text = label_efficiency.main([str(tmp_path / 'large'), str(tmp_path / 'small'), '--budgets', '100', '200',
                                  '--metrics', 'bev_ap_0.5', '--png', str(tmp_path / 'le.png')])
    rows = [line for line in text.splitlines() if line.startswith('| 6 ') or line.startswith('| 30 ')]
    assert rows == ['| 6 (2%) | 100 | bev_ap_0.5 | 0.600 ± 0.100 | 0.400 ± 0.100 | +0.200 | 0.100 | yes | 3/3 |',
                    '| 6 (2%) | 200 | bev_ap_0.5 | 0.640 ± 0.053 | 0.630 ± 0.044 | +0.010 | 0.053 | no | 2/3 |',
                    '| 30 (10%) | 100 | bev_ap_0.5 | 0.700 ± 0.100 | 0.500 ± 0.100 | +0.200 | 0.100 | yes | 3/3 |',
                    '| 30 (10%) | 200 | bev_ap_0.5 | 0.740 ± 0.053 | 0.730 ± 0.044 | +0.010 | 0.053 | no | 2/3 |']
    assert (tmp_path / 'le.png').read_bytes()[:4] == b'\x89PNG'
    with pytest.raises(SystemExit):   # a budget that was not evaluated
        label_efficiency.main([str(tmp_path / 'small'), '--budgets', '150'])
