"""The ALSO model on pillar backbones (PointPillars / CenterPoint-pillar stacks) at BEV strides 1, 2 and 4:
real forward and backward on ray-cast sweeps, latents paired with queries at the pillar map's cell size."""
import math

import pytest
import torch

from also_pcdet.datasets import build_dataloader
from also_pcdet.engine.batch import batch_to_device
from also_pcdet.models import build_network
from conftest import tiny_cfg
from stock_facts import stock_configs, with_stock_backbone

PILLAR = 0.16
SMALL = ['DATA_CONFIG.POINT_CLOUD_RANGE', '[0,-6.4,-3,12.8,6.4,1]', 'DATA_CONFIG.VOXEL_SIZE', f'[{PILLAR},{PILLAR},4]',
         'DATA_CONFIG.VOXELIZATION.MAX_POINTS_PER_VOXEL', '32', 'DATA_CONFIG.QUERIES.NUM_QUERIES', '512']


@pytest.mark.parametrize('stock, stride', [('waymo_models/pointpillar_1x.yaml', 1),
                                           ('kitti_models/pointpillar.yaml', 2),
                                           ('nuscenes_models/cbgs_pp_multihead.yaml', 4),
                                           ('waymo_models/centerpoint_dyn_pillar_1x.yaml', 1)])
def test_also_trains_on_a_pillar_bev_map(synthetic_kitti, stock, stride, one_thread):
    entry = stock_configs()[stock]
    cfg = with_stock_backbone(tiny_cfg(synthetic_kitti, *SMALL), stock)
    dataset, _ = build_dataloader(cfg.DATA_CONFIG, batch_size=2, workers=0, training=True, seed=0)
    torch.manual_seed(0)
    model = build_network(cfg.MODEL, dataset)
    assert model.backbone_3d is None and model.dense_head.latent_proj.in_channels == entry['num_bev_features']
    batch = batch_to_device(dataset.collate_batch([dataset[0], dataset[1]]), torch.device('cpu'))
    ret, tb, _ = model(batch)
    bev = batch['spatial_features_2d']
    assert bev.shape[2:] == (80 // stride, 80 // stride)
    assert model.dense_head.cell_size(bev.shape[2:]) == pytest.approx((PILLAR * stride, PILLAR * stride))
    out = model.dense_head.forward_ret_dict
    # every latent within the 1 m radius pairs with its query: ~pi (1 m / cell)^2 cells, at most 32
    expected = min(32.0, math.pi / (PILLAR * stride) ** 2)
    assert 0.75 * expected < tb['pairs_per_query'] <= expected + 2, tb['pairs_per_query']
    assert out['query_index'].max() < len(batch['queries'])
    ret['loss'].backward()
    grad = model.vfe.pfn_layers[0].linear.weight.grad
    assert torch.isfinite(ret['loss']) and grad is not None and grad.abs().sum() > 0
