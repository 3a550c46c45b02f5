"""nuScenes: pretraining sees intensity / 255, stock OpenPCDet feeds 0-255. The export folds the factor
into the first sparse conv so the fine-tuned detector computes exactly the pretrained features."""
import numpy as np
import pytest
import spconv.pytorch as spconv
import torch

from also_pcdet.datasets import SweepDataset
from also_pcdet.datasets.synthetic.layout_writers import write_nuscenes
from also_pcdet.engine.checkpoint import checkpoint_state, save_atomic
from also_pcdet.engine.export import FIRST_CONV, backbone_state, export_backbone
from also_pcdet.models import build_network
from shipped_configs import shipped_config


@pytest.fixture(scope='module')
def nuscenes_set(tmp_path_factory):
    root = tmp_path_factory.mktemp('nuscenes')
    write_nuscenes(root, num_sweeps=12, seed=2)
    return SweepDataset(shipped_config('nuscenes', root, 'DATA_CONFIG.DATA_SPLIT.test', 'train').DATA_CONFIG,
                        training=False)  # one synthetic scene: scene-0001, a train scene


def test_sources_declare_how_stock_openpcdet_scales_inputs(nuscenes_set, synthetic_kitti, tiny_config):
    assert nuscenes_set.stock_input_scale == [1.0, 1.0, 1.0, 255.0, 1.0]
    assert SweepDataset(tiny_config.DATA_CONFIG, training=False).stock_input_scale == [1.0] * 4


def test_folded_weights_give_identical_features_on_stock_input(nuscenes_set, tmp_path, one_thread):
    torch.manual_seed(0)
    cfg = shipped_config('nuscenes', nuscenes_set.root_path)
    model = build_network(cfg.MODEL, nuscenes_set).eval()
    sample = nuscenes_set[0]
    assert sample['points'][:, 3].max() <= 1.0
    ckpt = tmp_path / 'train.pth'
    save_atomic(checkpoint_state(model, stock_input_scale=nuscenes_set.stock_input_scale), ckpt)
    exported = export_backbone(ckpt, tmp_path / 'pretrained_backbone.pth')['model_state']
    original = model.state_dict()[FIRST_CONV].clone()
    np.testing.assert_allclose(exported[FIRST_CONV][..., 3].numpy(), original[..., 3].numpy() / 255, rtol=1e-6)
    torch.testing.assert_close(exported[FIRST_CONV][..., [0, 1, 2, 4]], original[..., [0, 1, 2, 4]])

    def first_conv(points_scale, weight):
        voxels = torch.from_numpy(sample['voxels']).clone()
        voxels[..., 3] *= points_scale
        batch = {'voxels': voxels, 'voxel_num_points': torch.from_numpy(sample['voxel_num_points'])}
        features = model.vfe(batch)['voxel_features']
        coords = torch.from_numpy(np.pad(sample['voxel_coords'], ((0, 0), (1, 0)))).int()
        conv = model.backbone_3d.conv_input[0]
        with torch.no_grad():
            conv.weight.copy_(weight)
            out = conv(spconv.SparseConvTensor(features, coords, model.backbone_3d.sparse_shape, 1))
        return out.features

    pretrained = first_conv(1.0, original)
    stock = first_conv(255.0, exported[FIRST_CONV])
    torch.testing.assert_close(stock, pretrained, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(first_conv(255.0, original), pretrained, atol=1e-2), 'unfolded weights differ'


def test_folding_refuses_a_vfe_with_weights():
    state = {FIRST_CONV: torch.ones(16, 3, 3, 3, 5), 'vfe.pfn_layers.0.linear.weight': torch.ones(64, 10)}
    with pytest.raises(ValueError, match='MeanVFE'):
        backbone_state(state, [1, 1, 1, 255, 1])
    assert backbone_state(state, [1, 1, 1, 1, 1])[FIRST_CONV].sum() == 16 * 27 * 5
