"""The query-to-latent column search against a brute-force search over every BEV cell."""
import numpy as np
import pytest
import torch

from also_pcdet.models.column_neighbours import column_neighbours

GRID_MIN, CELL, HW = (0.0, -8.0), (0.4, 0.4), (40, 44)   # y: 40 cells from -8 m, x: 44 cells from 0 m


def brute_force(query_xy, query_batch, radius, max_neighbours, grid_min=GRID_MIN, cell=CELL, hw=HW, active=None):
    """{(query, flat cell)} of the nearest `max_neighbours` cell centres within `radius` (only `active` ones
    when given, a (B*H*W,) bool array), per query."""
    height, width = hw
    iy, ix = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
    centres = np.stack([grid_min[0] + (ix + 0.5) * cell[0], grid_min[1] + (iy + 0.5) * cell[1]], -1).reshape(-1, 2)
    pairs = set()
    for q, (xy, b) in enumerate(zip(query_xy, query_batch)):
        dist = np.linalg.norm(centres - xy, axis=1)
        near = dist <= radius
        if active is not None:
            near &= active[int(b) * height * width:(int(b) + 1) * height * width]
        inside = np.flatnonzero(near)
        for cell in inside[np.argsort(dist[inside], kind='stable')][:max_neighbours]:
            pairs.add((q, int(b) * height * width + int(cell)))
    return pairs


def kept_distances(pairs, xy):
    height, width = HW
    out = []
    for query, flat in pairs:
        cell = flat % (height * width)
        centre = (GRID_MIN[0] + (cell % width + 0.5) * CELL[0], GRID_MIN[1] + (cell // width + 0.5) * CELL[1])
        out.append((query, round(float(np.hypot(*(xy[query] - centre))), 9)))
    return out


@pytest.mark.parametrize('radius,max_neighbours', [(1.0, 32), (1.0, 5), (0.3, 32), (2.1, 64)])
def test_matches_brute_force(radius, max_neighbours):
    rng = np.random.default_rng(0)
    # queries inside the map, near its borders and outside it
    xy = np.stack([rng.uniform(-1.5, 19.0, 400), rng.uniform(-9.5, 9.5, 400)], 1)
    batch = rng.integers(0, 3, 400)
    q, flat, centres = column_neighbours(torch.tensor(xy), torch.tensor(batch), GRID_MIN, CELL, HW,
                                         radius, max_neighbours)
    truth = brute_force(xy, batch, radius, max_neighbours)
    got = set(zip(q.tolist(), flat.tolist()))
    if max_neighbours >= 32 or radius < 1:
        assert got == truth
    else:   # ties at equal distance may be broken either way: the kept distances must agree
        assert sorted(kept_distances(got, xy)) == sorted(kept_distances(truth, xy))
    dist = np.linalg.norm(centres.numpy() - xy[q.numpy()], axis=1)
    assert dist.max() <= radius + 1e-9
    assert np.bincount(q.numpy(), minlength=400).max() <= max_neighbours
    cell = flat.numpy() % (HW[0] * HW[1])
    np.testing.assert_allclose(centres.numpy()[:, 0], GRID_MIN[0] + (cell % HW[1] + 0.5) * CELL[0])
    np.testing.assert_allclose(centres.numpy()[:, 1], GRID_MIN[1] + (cell // HW[1] + 0.5) * CELL[1])
    np.testing.assert_array_equal(flat.numpy() // (HW[0] * HW[1]), batch[q.numpy()])


def test_default_radius_gives_about_twenty_latents_per_query():
    """ALSO's 1 m radius on SECOND's 0.4 m BEV cells: ~pi * 2.5^2 ~ 20 latents for an interior query."""
    xy = torch.tensor([[8.1, 0.3], [8.0, 0.0]])
    q, _, _ = column_neighbours(xy, torch.zeros(2, dtype=torch.long), GRID_MIN, CELL, HW, 1.0, 32)
    counts = torch.bincount(q).tolist()
    assert all(16 <= c <= 24 for c in counts), counts


def test_pillar_map_at_stride_two_matches_brute_force():
    """KITTI PointPillars: 0.16 m pillars, BEV map at stride 2 (0.32 m cells, 248 x 216) from y = -39.68 m."""
    grid_min, cell, hw = (0.0, -39.68), (0.32, 0.32), (248, 216)
    rng = np.random.default_rng(1)
    xy = np.stack([rng.uniform(-1.0, 70.0, 300), rng.uniform(-40.5, 40.5, 300)], 1)
    batch = rng.integers(0, 2, 300)
    q, flat, centres = column_neighbours(torch.tensor(xy), torch.tensor(batch), grid_min, cell, hw, 1.0, 32)
    assert set(zip(q.tolist(), flat.tolist())) == brute_force(xy, batch, 1.0, 32, grid_min, cell, hw)
    assert np.linalg.norm(centres.numpy() - xy[q.numpy()], axis=1).max() <= 1.0 + 1e-9


@pytest.mark.parametrize('max_neighbours', [32, 3])
def test_sparse_map_pairs_queries_with_active_cells_only(max_neighbours):
    """VoxelNeXt's sparse BEV map: inactive cells are never paired, and the cap keeps the nearest active ones."""
    rng = np.random.default_rng(2)
    active = rng.random(3 * HW[0] * HW[1]) < 0.3
    xy = np.stack([rng.uniform(-1.5, 19.0, 400), rng.uniform(-9.5, 9.5, 400)], 1)
    batch = rng.integers(0, 3, 400)
    q, flat, _ = column_neighbours(torch.tensor(xy), torch.tensor(batch), GRID_MIN, CELL, HW, 1.0,
                                   max_neighbours, active=torch.tensor(active))
    assert active[flat.numpy()].all()
    truth = brute_force(xy, batch, 1.0, max_neighbours, active=active)
    got = set(zip(q.tolist(), flat.tolist()))
    if max_neighbours >= 32:
        assert got == truth
    else:
        assert sorted(kept_distances(got, xy)) == sorted(kept_distances(truth, xy))
