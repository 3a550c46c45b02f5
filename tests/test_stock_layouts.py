"""Every stock OpenPCDet config of a supported family, built by the fallback modules: the backbone's state_dict
keys and shapes, in order, equal what OpenPCDet's own registries build (tests/facts/stock_backbones.json),
and the BEV map comes out at the config's stride."""
import numpy as np
import pytest
import torch

from stock_facts import MODULES, build_stock, configs_of, crop, module_layout, stock_configs, synthetic_batch

FAMILIES = ('voxel', 'pillar', 'pillarnet', 'voxelnext')
COVERED = configs_of(*FAMILIES)


def test_every_config_of_the_covered_families_is_tested():
    counts = {family: len(configs_of(family)) for family in FAMILIES}
    assert counts == {'voxel': 28, 'pillar': 9, 'pillarnet': 3, 'voxelnext': 5}


@pytest.mark.parametrize('name', COVERED)
def test_state_dict_equals_openpcdet(name):
    entry = stock_configs()[name]
    model = build_stock(entry)
    np.testing.assert_array_equal(model.dataset.grid_size, entry['grid_size'])
    for module in MODULES:
        assert module_layout(model, module) == entry['backbone_state'].get(module, []), module
    assert [key for key in model.state_dict() if key != 'global_step'] == [
        key for module in MODULES for key, _ in entry['backbone_state'].get(module, [])]
    if model.backbone_2d is not None:
        assert model.backbone_2d.num_bev_features == entry['num_bev_features']
    else:   # VoxelNeXt: the sparse BEV tensor's channels
        assert model.backbone_3d.num_point_features == entry['num_bev_features']



@pytest.mark.parametrize('name', COVERED)
def test_bev_stride_equals_openpcdet(name, one_thread):
    """One forward on a small crop of the config's grid (its own voxel size and height)."""
    entry = stock_configs()[name]
    cells = 8 * max(int(entry['bev_stride']), 4)
    pc_range = crop(entry, cells)
    model = build_stock(entry, POINT_CLOUD_RANGE=pc_range)
    batch = synthetic_batch(entry, pc_range)
    with torch.no_grad():
        for module in model.module_list:
            batch = module(batch)
    if model.backbone_2d is not None:
        bev = batch['spatial_features_2d']
        assert bev.shape[:2] == (2, entry['num_bev_features'])
        height, width = bev.shape[2:]
    else:   # VoxelNeXt: the active cells of a sparse BEV tensor
        sparse = batch['encoded_spconv_tensor']
        height, width = sparse.spatial_shape
        bev = sparse.features
        assert bev.shape[1] == entry['num_bev_features'] and sparse.indices.shape[1] == 3
        assert 0 < len(bev) <= 2 * height * width and set(sparse.indices[:, 0].tolist()) == {0, 1}
    assert [cells / height, cells / width] == [entry['bev_stride']] * 2
    assert torch.isfinite(bev).all() and bev.abs().sum() > 0
