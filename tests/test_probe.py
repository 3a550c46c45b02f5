"""Few-label linear probe: per-point features from a frozen backbone, seeded and deterministic."""
import numpy as np
import pytest
import spconv.pytorch as spconv
import torch

from also_pcdet.datasets.synthetic import CLASS_NAMES
from also_pcdet.engine.checkpoint import checkpoint_state, save_atomic
from also_pcdet.engine.evaluation import load_trained
from also_pcdet.engine.export import export_backbone
from also_pcdet.config import cfg_from_list
from also_pcdet.detector_config import derive_from_file
from also_pcdet.engine.probe import gather_point_features, iou_from_confusion, run_probe, sparse_lookup
from also_pcdet.datasets import SweepDataset
from also_pcdet.models import build_network
from conftest import REPO, tiny_cfg
from stock_facts import with_stock_backbone

SMALL = ['DATA_CONFIG.POINT_CLOUD_RANGE', '[0,-6.4,-3,12.8,6.4,1]']


def test_sparse_lookup_finds_rows_and_flags_missing():
    indices = torch.tensor([[0, 1, 2, 3], [0, 0, 0, 0], [0, 1, 0, 3]])
    features = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    rows, found = sparse_lookup(indices, features, np.array([[0, 0, 0], [1, 0, 3], [1, 2, 3], [1, 1, 1]]), (2, 3, 4))
    assert found.tolist() == [True, True, True, False]
    assert rows[:, 0].tolist() == [2.0, 3.0, 1.0, 0.0]


def test_sparse_lookup_in_two_dimensions():
    rows, found = sparse_lookup(torch.tensor([[0, 2, 1], [0, 0, 3]]), torch.tensor([[5.0], [7.0]]),
                                np.array([[0, 3], [2, 1], [1, 1]]), (3, 4))
    assert found.tolist() == [True, True, False] and rows[:, 0].tolist() == [7.0, 5.0, 0.0]


def test_gather_point_features_chooses_by_what_the_batch_holds():
    """Pillars: the pillar's VFE features + its dense BEV cell; VoxelNeXt: x_conv1 + its sparse BEV cell, zeros
    where the cell is inactive. Grid: 8 x 8 voxels (x, y), 2 high; BEV maps at stride 2 (4 x 4 cells)."""
    grid = (8, 8, 2)
    zyx = np.array([[0, 5, 3], [1, 5, 2], [0, 0, 0], [1, 7, 7]])   # points 0, 1: two pillars, one BEV cell
    pillar_coords = torch.tensor([[0, 0, 5, 3], [0, 0, 5, 2], [0, 0, 7, 7]])   # b, z, y, x (PointPillars)
    pillar_features = torch.tensor([[1.0, 1.5], [2.0, 2.5], [3.0, 3.5]])
    bev = torch.arange(3 * 4 * 4, dtype=torch.float32).reshape(1, 3, 4, 4)
    features, found, names = gather_point_features(
        {'pillar_features': pillar_features, 'voxel_coords': pillar_coords, 'spatial_features_2d': bev}, zyx, grid)
    assert names == ['pillar_features (2)', 'spatial_features_2d (3)'] and features.shape == (4, 5)
    assert found.tolist() == [True, True, False, True]           # no pillar at (y 0, x 0)
    assert features[:, :2].tolist() == [[1.0, 1.5], [2.0, 2.5], [0.0, 0.0], [3.0, 3.5]]
    assert features[:, 2:].tolist() == [bev[0, :, 2, 1].tolist(), bev[0, :, 2, 1].tolist(),
                                        bev[0, :, 0, 0].tolist(), bev[0, :, 3, 3].tolist()]
    same, _, names = gather_point_features({'pillar_features': pillar_features, 'spatial_features_2d': bev,
                                            'pillar_coords': pillar_coords[:, [0, 2, 3]]}, zyx, grid)
    assert torch.equal(same, features)                             # PillarNet: (b, y, x) pillar coordinates

    conv1 = spconv.SparseConvTensor(torch.tensor([[1.0], [2.0], [3.0]]),
                                    torch.tensor([[0, 0, 5, 3], [0, 1, 5, 2], [0, 1, 7, 7]], dtype=torch.int32),
                                    [3, 8, 8], 1)                  # VoxelNeXt pads z by one
    cells = spconv.SparseConvTensor(torch.tensor([[10.0, 11.0], [20.0, 21.0]]),
                                    torch.tensor([[0, 2, 1], [0, 0, 0]], dtype=torch.int32), [4, 4], 1)
    features, found, names = gather_point_features(
        {'multi_scale_3d_features': {'x_conv1': conv1}, 'encoded_spconv_tensor': cells}, zyx, grid)
    assert names == ['x_conv1 (1)', 'encoded_spconv_tensor (2)'] and found.tolist() == [True, True, False, True]
    assert features.tolist() == [[1.0, 10.0, 11.0], [2.0, 10.0, 11.0], [0.0, 20.0, 21.0], [3.0, 0.0, 0.0]]

    with pytest.raises(KeyError, match='no BEV features'):
        gather_point_features({'multi_scale_3d_features': {'x_conv1': conv1}}, zyx, grid)
    with pytest.raises(KeyError, match='no per-voxel features'):
        gather_point_features({'spatial_features_2d': bev}, zyx, grid)


def test_iou_from_confusion():
    iou = iou_from_confusion(np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]]))
    np.testing.assert_allclose(iou[:2], [3 / 4, 2 / 3])
    assert np.isnan(iou[2])


@pytest.mark.slow
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


@pytest.mark.parametrize('family, features', [
    ('pillar', ['pillar_features (64)', 'spatial_features_2d (384)']),
    ('voxelnext', ['x_conv1 (16)', 'encoded_spconv_tensor (128)'])])
def test_probe_on_pillar_and_voxelnext_backbones(synthetic_kitti, family, features, one_thread):
    """KITTI PointPillars derived from the shipped detector config, and nuScenes VoxelNeXt's backbone, on a
    12.8 m box: the probe takes the features that family has, at the expected width."""
    if family == 'pillar':
        cfg = derive_from_file(tiny_cfg(synthetic_kitti), REPO / 'cfgs' / 'detector_cfgs' / 'kitti_pointpillar.yaml')
        cfg_from_list(SMALL, cfg)
        assert cfg.MODEL.VFE.NAME == 'PillarVFE' and cfg.DATA_CONFIG.VOXEL_SIZE == [0.16, 0.16, 4]
    else:
        cfg = with_stock_backbone(tiny_cfg(synthetic_kitti, *SMALL), 'nuscenes_models/cbgs_voxel0075_voxelnext.yaml')
    result = run_probe(cfg.MODEL, cfg.DATA_CONFIG, None, fraction=0.01, seed=0, steps=20, max_sweeps=1)
    assert result['features'] == features
    assert 0.0 < result['miou'] <= 1.0 and np.isfinite(result['iou'][~np.isnan(result['iou'])]).all()
    assert result['train_points'] > 30 and result['val_points'] > 3000
