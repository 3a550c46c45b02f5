"""Every stock OpenPCDet config of a supported family, built by the fallback modules: the backbone's state_dict
keys and shapes, in order, equal what OpenPCDet's own registries build (tests/facts/stock_backbones.json),
and the BEV map comes out at the config's stride."""
import numpy as np
import pytest
import torch

from also_pcdet.datasets.voxelizer import Voxelizer
from stock_facts import MODULES, build_stock, configs_of, module_layout, stock_configs

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



def crop(entry, cells):
    """The config's range cut to `cells` x `cells` voxels in x-y from its corner (full height)."""
    low, voxel = np.array(entry['point_cloud_range'][:3]), np.array(entry['voxel_size'])
    high = np.round(low[:2] + cells * voxel[:2], 6)
    return [float(v) for v in (*low, *high, entry['point_cloud_range'][5])]


def synthetic_batch(entry, pc_range, batch_size=2, num_points=1500, seed=0):
    """Uniform points with the config's features inside `pc_range`, voxelized with its settings."""
    rng = np.random.default_rng(seed)
    low, high = np.array(pc_range[:3]), np.array(pc_range[3:])
    points, voxels, coords, counts = [], [], [], []
    voxelize = Voxelizer(entry['voxel_size'], pc_range, entry['num_point_features'],
                         entry['max_points_per_voxel'] or 32, 100000)  # dynamic VFEs: no cap
    for b in range(batch_size):
        cloud = np.concatenate([rng.uniform(low, high, (num_points, 3)),
                                rng.random((num_points, entry['num_point_features'] - 3))], 1).astype(np.float32)
        sample = voxelize(cloud)
        points.append(np.pad(cloud, ((0, 0), (1, 0)), constant_values=b))
        voxels.append(sample['voxels'])
        coords.append(np.pad(sample['voxel_coords'], ((0, 0), (1, 0)), constant_values=b))
        counts.append(sample['voxel_num_points'])
    return {'points': torch.from_numpy(np.concatenate(points)), 'voxels': torch.from_numpy(np.concatenate(voxels)),
            'voxel_coords': torch.from_numpy(np.concatenate(coords)),
            'voxel_num_points': torch.from_numpy(np.concatenate(counts)), 'batch_size': batch_size}


@pytest.mark.parametrize('name', COVERED)
def test_bev_stride_equals_openpcdet(name, one_thread):
    """One forward on a small crop of the config's grid (its own voxel size and height)."""
    entry = stock_configs()[name]
    cells = 16 * max(int(entry['bev_stride']), 4)
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
