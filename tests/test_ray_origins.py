"""Per-point ray origins: queries start at each point's own sensor, never at a point whose origin is unknown,
and augmentation moves every origin with the points."""
import numpy as np
import pytest

from also_pcdet.datasets import SweepDataset
from also_pcdet.datasets.augmentation import RigidAugmentation
from also_pcdet.datasets.queries import QUERY_OUT_FAR, sample_queries
from also_pcdet.datasets.ray_origins import UNKNOWN_ORIGIN, RayOrigins, origin_arrays
from also_pcdet.datasets.readers import SweepError
from conftest import tiny_cfg

TABLE = np.array([[1.43, 0.0, 2.18], [4.07, 0.0, 0.69], [-1.15, 0.0, 0.47]])


def three_lidar_points(rng, per_lidar=400):  # 1200 points: above sweep_checks.MIN_POINTS
    """Random hits seen by three sensors; the third one's origin is unknown (index -1)."""
    xyz = rng.uniform([-10, -10, -2.5], [10, 10, 0.5], (3 * per_lidar, 3))
    index = np.repeat([0, 1, UNKNOWN_ORIGIN], per_lidar).astype(np.int8)
    intensity = rng.uniform(0, 1, (len(xyz), 1))
    return np.hstack([xyz, intensity]).astype(np.float32), index


def off_ray(queries, origins, hits):
    """Distance of each query from the line through its origin and each hit: (Q, N)."""
    ray = hits[None] - origins[:, None]
    unit = ray / np.linalg.norm(ray, axis=2, keepdims=True)
    rel = queries[:, None] - origins[:, None]
    along = (rel * unit).sum(2, keepdims=True)
    return np.linalg.norm(rel - along * unit, axis=2)


@pytest.mark.slow
def test_queries_start_at_their_own_sensor_and_skip_unknown_origins():
    points, index = three_lidar_points(np.random.default_rng(0))
    q = sample_queries(points[:, :3], points[:, 3], TABLE, 3000, 0.1, np.random.default_rng(1), index)
    assert np.all(index[q['source']] >= 0), 'a point of unknown origin seeded a query'
    np.testing.assert_array_equal(q['origin_index'], index[q['source']])
    assert set(q['origin_index']) == {0, 1}
    hits = points[q['source'], :3].astype(np.float64)
    origins = TABLE[q['origin_index']]
    # each query is on the ray from its own sensor through its hit, not on the other sensor's ray
    along = np.diagonal(off_ray(q['xyz'].astype(np.float64), origins, hits))
    assert along.max() < 1e-4
    other = TABLE[1 - q['origin_index']]
    far = q['kind'] == QUERY_OUT_FAR
    assert np.median(np.diagonal(off_ray(q['xyz'][far].astype(np.float64), other[far], hits[far]))) > 0.1


def test_no_point_with_a_known_origin_is_an_error():
    points, index = three_lidar_points(np.random.default_rng(0), per_lidar=10)
    with pytest.raises(ValueError, match='known ray origin'):
        sample_queries(points[:, :3], points[:, 3], TABLE, 64, 0.1, np.random.default_rng(1),
                       np.full(len(points), UNKNOWN_ORIGIN))


def test_one_origin_is_the_unchanged_fast_path():
    points, _ = three_lidar_points(np.random.default_rng(2))
    one = sample_queries(points[:, :3], points[:, 3], TABLE[0], 512, 0.1, np.random.default_rng(3))
    table = sample_queries(points[:, :3], points[:, 3], TABLE[:1], 512, 0.1, np.random.default_rng(3),
                           np.zeros(len(points), np.int64))
    for key in one:
        np.testing.assert_array_equal(one[key], table[key])


def test_malformed_origins_name_the_sweep():
    with pytest.raises(ValueError, match='sweep_7.*outside'):
        origin_arrays(RayOrigins(TABLE, np.array([0, 3])), 2, 'sweep_7')
    with pytest.raises(ValueError, match='sweep_7.*\\(3,\\)'):
        origin_arrays(RayOrigins(TABLE, np.array([0, 1])), 3, 'sweep_7')
    table, index = origin_arrays((1.0, 2.0, 3.0), 5, 'sweep_7')
    assert table.shape == (1, 3) and index is None


@pytest.mark.parametrize('seed', [0, 1])
def test_augmented_sample_keeps_every_query_on_its_sensors_ray(synthetic_kitti, seed):
    cfg = tiny_cfg(synthetic_kitti, 'DATA_CONFIG.POINT_CLOUD_RANGE', '[-12.8,-12.8,-3,12.8,12.8,1]',
                   'DATA_CONFIG.QUERIES.DECIMATION_CELL', '0.001', 'DATA_CONFIG.AUGMENTATION.FLIP_X_PROB', '0.5')
    dataset = SweepDataset(cfg.DATA_CONFIG, training=True, seed=seed)
    points, index = three_lidar_points(np.random.default_rng(seed))
    sample = dataset.prepare(points, RayOrigins(TABLE, index, ('TOP', 'FRONT', 'REAR')), 'three', 0)
    augmentation = RigidAugmentation.draw(cfg.DATA_CONFIG.AUGMENTATION, dataset.rng(0))
    np.testing.assert_allclose(sample['ray_origins'], augmentation.apply(TABLE), atol=1e-5)
    moved = augmentation.apply(points[:, :3].astype(np.float64))
    rows = sample['query_origin_index']
    distance = off_ray(sample['queries'].astype(np.float64), sample['ray_origins'][rows].astype(np.float64), moved)
    same_lidar = index[None, :] == rows[:, None]
    assert np.all(np.where(same_lidar, distance, np.inf).min(1) < 1e-3), 'query off every ray of its lidar'
    assert set(rows) == {0, 1}


def test_a_sweep_whose_points_all_lack_an_origin_is_skipped(synthetic_kitti):
    dataset = SweepDataset(tiny_cfg(synthetic_kitti).DATA_CONFIG, training=False)
    points, _ = three_lidar_points(np.random.default_rng(0))
    points[:, 0] = np.abs(points[:, 0])  # inside the front box
    with pytest.raises(SweepError, match='known ray origin'):
        dataset.prepare(points, RayOrigins(TABLE, np.full(len(points), UNKNOWN_ORIGIN)), 'lost', 0)
