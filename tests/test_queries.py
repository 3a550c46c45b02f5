"""ALSO query labels on real ray-cast sweeps: geometry along each ray, counts, intensity, determinism."""
import numpy as np
import pytest

from also_pcdet.datasets.queries import (QUERY_IN, QUERY_OUT_FAR, QUERY_OUT_NEAR, decimate, sample_queries,
                                         split_count)
from also_pcdet.datasets.synthetic import make_sweep

BAND = 0.1


@pytest.fixture(scope='module')
def sweep():
    out = make_sweep(seed=3, index=0)
    return out['points']


def along_ray(queries, points, origin):
    """For each query: distance along its source point's ray relative to the hit, and distance off the ray."""
    hit = points[queries['source'], :3].astype(np.float64)
    ray = hit - origin
    ray_len = np.linalg.norm(ray, axis=1)
    unit = ray / ray_len[:, None]
    rel = queries['xyz'].astype(np.float64) - origin
    t = (rel * unit).sum(1)
    off = np.linalg.norm(rel - t[:, None] * unit, axis=1)
    return t - ray_len, off, ray_len


@pytest.mark.parametrize('origin', [(0.0, 0.0, 0.0), (1.43, 0.0, 2.18)])
def test_labels_follow_the_ray(sweep, origin):
    origin = np.asarray(origin)
    q = sample_queries(sweep[:, :3], sweep[:, 3], origin, 4096, BAND, np.random.default_rng(0))
    behind, off, ray_len = along_ray(q, sweep, origin)
    assert np.all(off < 1e-4), 'every query lies on its source ray'
    kind = q['kind']
    assert np.all((behind[kind == QUERY_IN] > 0) & (behind[kind == QUERY_IN] <= BAND + 1e-5))
    assert np.all((behind[kind == QUERY_OUT_NEAR] < 0) & (behind[kind == QUERY_OUT_NEAR] >= -BAND - 1e-5))
    far = kind == QUERY_OUT_FAR
    assert np.all((behind[far] < 0) & (behind[far] >= -ray_len[far] - 1e-5)), 'between sensor and hit'
    assert np.all(q['occupancy'][kind == QUERY_IN] == 1)
    assert np.all(q['occupancy'][kind != QUERY_IN] == 0)
    # the queries spread over the whole band, not a constant offset
    assert behind[kind == QUERY_IN].std() > BAND / 5


def test_counts_per_type():
    assert split_count(4096) == (1366, 1365, 1365)
    pts = np.random.default_rng(0).normal(size=(500, 3)) * 10
    q = sample_queries(pts, np.ones(500, np.float32), np.zeros(3), 4096, BAND, np.random.default_rng(1))
    assert [int((q['kind'] == k).sum()) for k in (QUERY_IN, QUERY_OUT_NEAR, QUERY_OUT_FAR)] == [1366, 1365, 1365]
    assert q['xyz'].shape == (4096, 3) and q['xyz'].dtype == np.float32


def test_intensity_targets_and_mask(sweep):
    q = sample_queries(sweep[:, :3], sweep[:, 3], np.zeros(3), 4096, BAND, np.random.default_rng(2))
    has = q['kind'] != QUERY_OUT_FAR
    assert np.array_equal(q['intensity_mask'], has.astype(np.float32))
    np.testing.assert_array_equal(q['intensity'][has], sweep[q['source'][has], 3])
    assert np.all(q['intensity'][~has] == 0)


def test_each_type_draws_its_own_sources(sweep):
    q = sample_queries(sweep[:, :3], sweep[:, 3], np.zeros(3), 4096, BAND, np.random.default_rng(4))
    src = {k: set(q['source'][q['kind'] == k]) for k in (QUERY_IN, QUERY_OUT_NEAR, QUERY_OUT_FAR)}
    # with 100k+ points, independent draws of ~1365 sources share only a few
    assert len(src[QUERY_IN] & src[QUERY_OUT_NEAR]) < 100


def test_deterministic_under_seed(sweep):
    def draw(seed):
        return sample_queries(sweep[:, :3], sweep[:, 3], np.zeros(3), 4096, BAND, np.random.default_rng(seed))
    a, b, c = draw(7), draw(7), draw(8)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a['xyz'], c['xyz'])


def test_decimation_keeps_one_point_per_cell(sweep):
    keep = decimate(sweep[:, :3], 0.05, np.random.default_rng(0))
    cells = np.floor(sweep[keep, :3] / 0.05).astype(np.int64)
    all_cells = np.unique(np.floor(sweep[:, :3] / 0.05).astype(np.int64), axis=0)
    assert len(np.unique(cells, axis=0)) == len(keep) == len(all_cells)
    again = decimate(sweep[:, :3], 0.05, np.random.default_rng(0))
    np.testing.assert_array_equal(keep, again)
    assert len(decimate(sweep[:, :3], 0.5, np.random.default_rng(0))) < len(keep)
