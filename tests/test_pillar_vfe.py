"""Dynamic VFEs (plain torch, from raw points) against the voxelized path, and the pillar scatter."""
import numpy as np
import pytest
import torch
from easydict import EasyDict

from also_pcdet.datasets.voxelizer import Voxelizer
from also_pcdet.models.backbones import (DynamicPillarVFESimple2D, DynMeanVFE, DynPillarVFE, MeanVFE, PillarVFE,
                                         PointPillarScatter)

PC_RANGE = [0.0, -3.2, -2.0, 6.4, 3.2, 4.0]
PILLAR = [0.32, 0.32, 6.0]
PILLAR_CFG = EasyDict(WITH_DISTANCE=True, USE_ABSLOTE_XYZ=True, USE_NORM=True, NUM_FILTERS=[16, 32])


def cloud(num, seed=0, channels=5):
    rng = np.random.default_rng(seed)
    xyz = rng.uniform([-0.5, -3.6, -2.0], [7.0, 3.6, 4.0], (num, 3))   # some points outside x-y
    return np.concatenate([xyz, rng.random((num, channels - 3))], 1).astype(np.float32)


def with_batch(clouds):
    return torch.from_numpy(np.concatenate([np.pad(c, ((0, 0), (1, 0)), constant_values=b)
                                            for b, c in enumerate(clouds)]))


def voxelized(clouds, voxel_size, max_points):
    voxelize = Voxelizer(voxel_size, PC_RANGE, clouds[0].shape[1], max_points, 100000)
    parts = [voxelize(c) for c in clouds]
    return {'voxels': torch.from_numpy(np.concatenate([p['voxels'] for p in parts])),
            'voxel_num_points': torch.from_numpy(np.concatenate([p['voxel_num_points'] for p in parts])),
            'voxel_coords': torch.from_numpy(np.concatenate([np.pad(p['voxel_coords'], ((0, 0), (1, 0)),
                                                                    constant_values=b)
                                                             for b, p in enumerate(parts)])),
            'batch_size': len(clouds)}


def by_coords(coords, features):
    order = np.lexsort(coords.numpy().T[::-1])
    return coords[order], features[order]


def grid(voxel_size):
    return np.round((np.array(PC_RANGE[3:]) - PC_RANGE[:3]) / voxel_size).astype(int)


def test_dyn_mean_vfe_equals_voxelize_then_mean():
    voxel = [0.4, 0.4, 0.5]
    clouds = [cloud(3000, 0), cloud(2000, 1)]
    dynamic = DynMeanVFE(EasyDict(NAME='DynMeanVFE'), 5, voxel, grid(voxel), PC_RANGE)
    out = dynamic({'points': with_batch(clouds), 'batch_size': 2})
    reference = MeanVFE(EasyDict(), 5)(voxelized(clouds, voxel, 100))      # cap above any voxel's count
    got = by_coords(out['voxel_coords'], out['voxel_features'])
    want = by_coords(reference['voxel_coords'], reference['voxel_features'])
    assert torch.equal(got[0], want[0].int())
    torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-6)
    assert out['voxel_coords'].dtype == torch.int32 and len(dynamic.state_dict()) == 0


def full_pillars(points_per_pillar=4, seed=0):
    """Points placed so that every occupied pillar holds exactly `points_per_pillar` points."""
    rng = np.random.default_rng(seed)
    nx, ny, _ = grid(PILLAR)
    cells = rng.choice(nx * ny, 60, replace=False)
    ix, iy = cells % nx, cells // nx
    low = np.array(PC_RANGE[:2]) + np.stack([ix, iy], 1) * PILLAR[:2]
    xy = np.repeat(low, points_per_pillar, 0) + rng.uniform(0.01, 0.31, (len(cells) * points_per_pillar, 2))
    z = rng.uniform(-2, 4, (len(xy), 1))
    return np.concatenate([xy, z, rng.random((len(xy), 2))], 1).astype(np.float32)


@pytest.mark.parametrize('use_absolute_xyz', [True, False])
def test_dyn_pillar_vfe_equals_pillar_vfe_on_full_pillars(use_absolute_xyz):
    cfg = EasyDict(PILLAR_CFG, USE_ABSLOTE_XYZ=use_absolute_xyz)
    torch.manual_seed(0)
    padded = PillarVFE(cfg, 5, PILLAR, PC_RANGE).eval()
    dynamic = DynPillarVFE(cfg, 5, PILLAR, grid(PILLAR), PC_RANGE).eval()
    dynamic.load_state_dict(padded.state_dict())
    for module in padded.modules():   # non-trivial normalisation statistics
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    dynamic.load_state_dict(padded.state_dict())
    clouds = [full_pillars(seed=0), full_pillars(seed=1)]
    batch = voxelized(clouds, PILLAR, 4)
    assert (batch['voxel_num_points'] == 4).all()
    with torch.no_grad():
        want = by_coords(batch['voxel_coords'], padded(batch)['pillar_features'])
        out = dynamic({'points': with_batch(clouds), 'batch_size': 2})
    got = by_coords(out['voxel_coords'], out['pillar_features'])
    assert torch.equal(got[0], want[0].int())
    torch.testing.assert_close(got[1], want[1], rtol=1e-4, atol=1e-5)
    assert got[1].shape == (120, 32) and padded.get_output_feature_dim() == 32


def test_dyn_pillar_vfe_trains_and_drops_points_outside():
    torch.manual_seed(0)
    vfe = DynPillarVFE(PILLAR_CFG, 5, PILLAR, grid(PILLAR), PC_RANGE)
    points = with_batch([cloud(800, 0), cloud(800, 1)])
    out = vfe({'points': points, 'batch_size': 2})
    coords = out['voxel_coords']
    assert (coords[:, 1] == 0).all() and (coords[:, 2:] >= 0).all()
    assert (coords[:, 3] < grid(PILLAR)[0]).all() and (coords[:, 2] < grid(PILLAR)[1]).all()
    assert len(torch.unique(coords, dim=0)) == len(coords)
    out['pillar_features'].square().sum().backward()
    assert all(torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in vfe.parameters())


def test_scatter_puts_each_pillar_at_its_cell():
    scatter = PointPillarScatter(EasyDict(NUM_BEV_FEATURES=3), [5, 4, 1])
    coords = torch.tensor([[0, 0, 1, 2], [1, 0, 3, 4], [1, 0, 0, 0]], dtype=torch.int32)
    features = torch.arange(9, dtype=torch.float32).view(3, 3)
    bev = scatter({'pillar_features': features, 'voxel_coords': coords, 'batch_size': 3})['spatial_features']
    assert bev.shape == (3, 3, 4, 5)
    assert torch.equal(bev[0, :, 1, 2], features[0]) and torch.equal(bev[1, :, 3, 4], features[1])
    assert torch.equal(bev[1, :, 0, 0], features[2]) and bev.abs().sum() == features.sum() and bev[2].abs().sum() == 0
    with pytest.raises(ValueError, match='one z cell'):
        PointPillarScatter(EasyDict(NUM_BEV_FEATURES=3), [5, 4, 40])


def test_pillarnet_vfe_decorates_with_centre_offset_then_raw_features():
    """One point per pillar: the feature is ReLU(BN(W [offset from the pillar centre, raw point])), pillars
    keyed (b, y, x) in `pillar_coords`."""
    cfg = EasyDict(WITH_DISTANCE=False, USE_ABSLOTE_XYZ=True, USE_CLUSTER_XYZ=False, USE_NORM=True, NUM_FILTERS=[6])
    torch.manual_seed(0)
    vfe = DynamicPillarVFESimple2D(cfg, 4, PILLAR, grid(PILLAR), PC_RANGE).eval()
    assert vfe.pfn_layers[0].linear.weight.shape == (6, 7)
    points = torch.tensor([[0, 0.5, -3.0, 1.0, 0.3], [1, 6.3, 3.1, -1.5, 0.9]])
    out = vfe({'points': points, 'batch_size': 2})
    assert out['pillar_coords'].tolist() == [[0, 0, 1], [1, 19, 19]]
    centres = torch.tensor([[0.48, -3.04, 1.0], [6.24, 3.04, 1.0]])   # x, y cell centres; z mid-range
    decorated = torch.cat([points[:, 1:4] - centres, points[:, 1:]], 1)
    layer = vfe.pfn_layers[0]
    expected = torch.relu(layer.norm(layer.linear(decorated)))
    torch.testing.assert_close(out['pillar_features'], expected)
