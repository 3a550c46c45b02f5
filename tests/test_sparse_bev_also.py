"""The ALSO model on PillarNet (dense BEV map from a 2D sparse backbone) and VoxelNeXt (no dense map: latents
only on the active cells of its sparse stride-8 BEV tensor): real forward and backward on ray-cast sweeps."""
import pytest
import torch

from also_pcdet.datasets import build_dataloader
from also_pcdet.engine.batch import batch_to_device
from also_pcdet.models import build_network
from also_pcdet.models.column_neighbours import column_neighbours
from conftest import tiny_cfg
from stock_facts import with_stock_backbone

SMALL = ['DATA_CONFIG.POINT_CLOUD_RANGE', '[0,-6.4,-3,12.8,6.4,1]', 'DATA_CONFIG.QUERIES.NUM_QUERIES', '512']


def stock_model(data_path, stock):
    """The tiny ALSO config with the stock config's VFE / BACKBONE_3D / MAP_TO_BEV / BACKBONE_2D."""
    cfg = with_stock_backbone(tiny_cfg(data_path, *SMALL), stock)
    dataset, _ = build_dataloader(cfg.DATA_CONFIG, batch_size=2, workers=0, training=True, seed=0)
    torch.manual_seed(0)
    model = build_network(cfg.MODEL, dataset)
    batch = batch_to_device(dataset.collate_batch([dataset[0], dataset[1]]), torch.device('cpu'))
    return model, batch


def test_also_on_voxelnext_pairs_queries_with_active_cells_only(synthetic_kitti, one_thread):
    model, batch = stock_model(synthetic_kitti, 'nuscenes_models/cbgs_voxel0075_voxelnext.yaml')
    ret, tb, _ = model(batch)
    sparse = batch['encoded_spconv_tensor']
    assert 'spatial_features_2d' not in batch and sparse.spatial_shape == [32, 32]
    head = model.dense_head
    latents, hw, row = head.bev_latents(batch)
    assert len(latents) == len(sparse.features) == int((row >= 0).sum()) and hw == (32, 32)

    b, y, x = sparse.indices.long().unbind(1)
    active = torch.zeros(2 * 32 * 32, dtype=torch.bool)
    active[(b * 32 + y) * 32 + x] = True
    assert 0 < active.float().mean() < 1        # a sparse map: some cells hold no latent
    queries, cfg = batch['queries'], head.model_cfg
    args = (queries[:, 1:3], queries[:, 0], head.point_cloud_range[:2], (0.4, 0.4), (32, 32), cfg.RADIUS,
            cfg.MAX_NEIGHBOURS)
    q_active, _, _ = column_neighbours(*args, active=active)
    q_dense, _, _ = column_neighbours(*args)
    assert torch.equal(head.forward_ret_dict['query_index'], q_active) and len(q_dense) > len(q_active)

    ret['loss'].backward()
    for weight in (model.backbone_3d.conv_input[0].weight, model.backbone_3d.conv6[0][0].weight,
                   model.backbone_3d.shared_conv[0].weight, head.latent_proj.weight):
        assert weight.grad is not None and weight.grad.abs().sum() > 0


@pytest.mark.parametrize('stock', ['kitti_models/pillarnet.yaml', 'waymo_models/pillarnet.yaml'])
def test_also_on_pillarnet(synthetic_kitti, stock, one_thread):
    model, batch = stock_model(synthetic_kitti, stock)
    ret, tb, _ = model(batch)
    assert batch['spatial_features_2d'].shape == (2, 256, 32, 32)
    assert tb['pairs_per_query'] > 15          # ~pi (1 m / 0.4 m)^2 cells within the 1 m radius
    ret['loss'].backward()
    grad = model.vfe.pfn_layers[0].linear.weight.grad
    assert grad is not None and grad.abs().sum() > 0 and model.backbone_3d.conv5[0][0].weight.grad.abs().sum() > 0
