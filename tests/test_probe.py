"""Few-label linear probe: per-point features from a frozen backbone, seeded and deterministic."""
import numpy as np
import pytest
import torch

from also_pcdet.datasets.synthetic import CLASS_NAMES
from also_pcdet.engine.checkpoint import checkpoint_state, save_atomic
from also_pcdet.engine.evaluation import load_trained
from also_pcdet.engine.export import export_backbone
from also_pcdet.engine.probe import iou_from_confusion, run_probe, sparse_lookup
from also_pcdet.datasets import SweepDataset
from also_pcdet.models import build_network
from conftest import tiny_cfg


def test_sparse_lookup_finds_rows_and_flags_missing():
    indices = torch.tensor([[0, 1, 2, 3], [0, 0, 0, 0], [0, 1, 0, 3]])
    features = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    rows, found = sparse_lookup(indices, features, np.array([[0, 0, 0], [1, 0, 3], [1, 2, 3], [1, 1, 1]]), (2, 3, 4))
    assert found.tolist() == [True, True, True, False]
    assert rows[:, 0].tolist() == [2.0, 3.0, 1.0, 0.0]


def test_iou_from_confusion():
    iou = iou_from_confusion(np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]]))
    np.testing.assert_allclose(iou[:2], [3 / 4, 2 / 3])
    assert np.isnan(iou[2])


def test_probe_is_deterministic_and_reads_exported_backbones(synthetic_kitti, tmp_path):
    cfg = tiny_cfg(synthetic_kitti)
    options = dict(fraction=0.01, seed=3, steps=20, max_sweeps=1)
    random_init = run_probe(cfg.MODEL, cfg.DATA_CONFIG, None, **options)
    assert 0.0 <= random_init['miou'] <= 1.0
    assert random_init['iou'].shape == (len(CLASS_NAMES),) and random_init['class_names'] == list(CLASS_NAMES)
    assert random_init['train_points'] > 100 and random_init['val_points'] > 10000

    dataset = SweepDataset(cfg.DATA_CONFIG)
    with torch.random.fork_rng():
        torch.manual_seed(3)  # the random backbone run_probe draws for seed 3
        model = build_network(cfg.MODEL, dataset)
    save_atomic(checkpoint_state(model), tmp_path / 'ckpt.pth')
    export_backbone(tmp_path / 'ckpt.pth', tmp_path / 'backbone.pth')
    same = run_probe(cfg.MODEL, cfg.DATA_CONFIG, tmp_path / 'backbone.pth', **options)
    assert same['miou'] == random_init['miou']
    np.testing.assert_array_equal(same['iou'], random_init['iou'])

    other = load_trained(build_network(cfg.MODEL, dataset), tmp_path / 'backbone.pth', backbone_only=True)
    torch.testing.assert_close(other.backbone_3d.state_dict(), model.backbone_3d.state_dict())
    with pytest.raises(KeyError, match='dense_head'):
        load_trained(build_network(cfg.MODEL, dataset), tmp_path / 'backbone.pth')
