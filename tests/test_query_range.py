"""Queries from every ray of the sweep (ALSO draws them from all decimated hits), kept inside POINT_CLOUD_RANGE:
the in-range stretch of a ray to a hit outside the range still supervises, no query is wasted."""
import numpy as np
import pytest

from also_pcdet.datasets import SweepDataset
from also_pcdet.datasets.queries import (QUERY_IN, QUERY_OUT_FAR, QUERY_OUT_NEAR, QueryShortage, rays_reaching_range,
                                         sample_queries_in_range, split_count)
from also_pcdet.datasets.sweep_checks import inside_range
from conftest import tiny_cfg

RANGE = np.array([0, -12.8, -3, 25.6, 12.8, 1], dtype=np.float32)  # tiny_cfg's box: its top is 1 m above the sensor


def street(rng, wall: bool) -> np.ndarray:
    """A ground plane 1.73 m below the sensor inside the box and, with `wall`, a facade at x = 15 m whose
    points all lie above the box's top (z 1.5 to 8 m): the only surface above the sensor."""
    ground = np.column_stack([rng.uniform(2, 25, 20000), rng.uniform(-12, 12, 20000), np.full(20000, -1.73)])
    parts = [ground]
    if wall:
        parts.append(np.column_stack([np.full(8000, 15.0), rng.uniform(-10, 10, 8000), rng.uniform(1.5, 8, 8000)]))
    xyz = np.concatenate(parts)
    return np.column_stack([xyz, rng.uniform(0, 1, len(xyz))]).astype(np.float32)


@pytest.fixture
def dataset(synthetic_kitti):
    return SweepDataset(tiny_cfg(synthetic_kitti).DATA_CONFIG, training=False, seed=0)


def test_out_of_range_wall_gives_far_empty_queries_inside_the_range_above_the_sensor(dataset):
    sample = dataset.prepare(street(np.random.default_rng(0), wall=True), np.zeros(3), 'wall', 0)
    queries, hits = sample['queries'], sample['query_hits']
    kind = np.where(sample['query_occupancy'] > 0, QUERY_IN,  # out-far queries have no intensity target
                    np.where(sample['query_intensity_mask'] > 0, QUERY_OUT_NEAR, QUERY_OUT_FAR))
    assert inside_range(queries, RANGE).all()  # no query wasted
    assert [int((kind == k).sum()) for k in range(3)] == list(split_count(2048))
    above = queries[:, 2] > 0.0  # above the sensor: only rays to the wall pass there
    assert above.sum() > 20 and (kind[above] == QUERY_OUT_FAR).all()
    assert (sample['query_occupancy'][above] == 0).all() and (hits[above, 2] > RANGE[5]).all()
    np.testing.assert_allclose(queries[above, 0] / hits[above, 0], queries[above, 2] / hits[above, 2], rtol=1e-4)
    assert queries[above, 2].max() > 0.9 and ((hits[:, 2] > RANGE[5]) == above).all()  # up to the box's top
    # the network input is the decimated in-range hits only: one point per 5 cm cube, none of the wall
    points = sample['points']
    assert inside_range(points[:, :3], RANGE).all()
    assert len(np.unique(np.floor(points[:, :3] / 0.05).astype(np.int64), axis=0)) == len(points)

    without = dataset.prepare(street(np.random.default_rng(0), wall=False), np.zeros(3), 'ground', 0)
    assert (without['queries'][:, 2] <= 0.0).all()  # the ground's rays never rise above the sensor


def test_out_of_range_sampling_is_deterministic_under_the_seed(synthetic_kitti):
    points = street(np.random.default_rng(1), wall=True)

    def sample(seed):
        return SweepDataset(tiny_cfg(synthetic_kitti).DATA_CONFIG, training=True, seed=seed).prepare(
            points, np.zeros(3), 'wall', 3)
    a, b, c = sample(5), sample(5), sample(6)
    for key in ('points', 'queries', 'query_hits', 'query_occupancy', 'voxels'):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a['queries'], c['queries'])


@pytest.mark.slow
def test_out_of_range_rays_reaching_the_box_are_never_missed():
    """Every hit with a point of its segment (origin to BAND behind the hit) inside the box is kept by the
    bound; KITTI's rear half (the box starts at the sensor) is not."""
    rng = np.random.default_rng(2)
    hits = rng.uniform(-60, 90, (3000, 3)) * np.array([1, 1, 0.1])
    origins = rng.uniform(-2, 2, (3000, 3))
    for start in (np.zeros(3), origins):
        reach = rays_reaching_range(hits, start, 0.1, RANGE)
        offset = hits - start
        end = hits + 0.1 * offset / np.linalg.norm(offset, axis=1, keepdims=True)
        t = np.linspace(0, 1, 4001)[1:, None, None]
        along = start + t * (end - start)  # (T, N, 3)
        inside = inside_range(along.reshape(-1, 3), RANGE).reshape(len(t), -1).any(axis=0)
        assert (reach | ~inside).all() and reach.sum() < len(hits)
    rear = np.column_stack([rng.uniform(-50, -0.2, 500), rng.uniform(-10, 10, 500), rng.uniform(-2, 0.5, 500)])
    assert not rays_reaching_range(rear, np.zeros(3), 0.1, RANGE).any()


def test_out_of_range_kind_that_cannot_fill_falls_back_or_stops():
    rng = np.random.default_rng(3)
    box = np.array([0, -1, -1, 10, 1, 1], dtype=np.float32)
    beyond = np.array([[20.0, 0.0, 0.0]])  # only its far-empty queries can be in range
    with pytest.raises(QueryShortage, match='no query of kind in falls inside POINT_CLOUD_RANGE'):
        sample_queries_in_range(beyond, np.ones(1), np.zeros(3), 300, 0.1, rng, box)
    edge = np.array([[9.99999, 0.0, 0.0]])  # behind it, in range only within 10 um: "in" rarely fills
    queries = sample_queries_in_range(edge, np.ones(1), np.zeros(3), 300, 0.1, rng, box)
    kind = queries['kind']
    assert [int((kind == k).sum()) for k in range(3)] == [100, 100, 100]
    assert inside_range(queries['xyz'], box).all()
    assert len(np.unique(queries['xyz'][kind == QUERY_IN], axis=0)) < 100  # repeated kept "in" queries
