"""Augmentation moves points, queries and the sensor origin together, so ray labels stay valid."""
import numpy as np
import pytest

from also_pcdet.datasets.augmentation import RigidAugmentation
from also_pcdet.datasets.queries import QUERY_IN, QUERY_OUT_NEAR, sample_queries
from also_pcdet.datasets.synthetic import make_sweep


def signed_offsets(qxyz, hits, origin):
    ray = hits - origin
    length = np.linalg.norm(ray, axis=1)
    t = ((qxyz - origin) * (ray / length[:, None])).sum(1)
    return t - length


@pytest.mark.parametrize('angle,flip', [(0.7, False), (-2.5, True), (np.pi, True)])
def test_rotate_and_flip_keep_labels_valid(angle, flip):
    pts = make_sweep(seed=5, index=1)['points']
    origin = np.array([1.43, 0.0, 2.18])
    q = sample_queries(pts[:, :3], pts[:, 3], origin, 2048, 0.1, np.random.default_rng(0))
    aug = RigidAugmentation(angle, flip)
    new_pts, new_q, new_origin = aug.apply(pts), aug.apply(q['xyz']), aug.apply(origin)
    # the transform really moved things, kept the intensity column and is rigid
    assert np.abs(new_pts[:, :2] - pts[:, :2]).max() > 1.0
    np.testing.assert_array_equal(new_pts[:, 3], pts[:, 3])
    np.testing.assert_allclose(np.linalg.norm(new_pts[:, :3] - new_origin, axis=1),
                               np.linalg.norm(pts[:, :3] - origin, axis=1), rtol=1e-5)
    assert np.isclose(np.linalg.det(aug.matrix), -1.0 if flip else 1.0)
    before = signed_offsets(q['xyz'].astype(np.float64), pts[q['source'], :3].astype(np.float64), origin)
    after = signed_offsets(new_q.astype(np.float64), new_pts[q['source'], :3].astype(np.float64), new_origin)
    np.testing.assert_allclose(after, before, atol=2e-5)
    assert np.all(after[q['kind'] == QUERY_IN] > 0)
    assert np.all(after[q['kind'] == QUERY_OUT_NEAR] < 0)


def test_flip_negates_x_after_rotation():
    aug = RigidAugmentation(np.pi / 2, True)
    np.testing.assert_allclose(aug.apply(np.array([1.0, 0.0, 0.5])), [0.0, 1.0, 0.5], atol=1e-12)


def test_draw_respects_config():
    from easydict import EasyDict
    cfg = EasyDict(ROT_RANGE=[-10, 10], FLIP_X_PROB=0.0)
    rng = np.random.default_rng(0)
    draws = [RigidAugmentation.draw(cfg, rng) for _ in range(200)]
    assert all(abs(d.angle) <= np.deg2rad(10) for d in draws) and not any(d.flip_x for d in draws)
    cfg = EasyDict(ROT_RANGE=[-180, 180], FLIP_X_PROB=0.5)
    flips = [RigidAugmentation.draw(cfg, rng).flip_x for _ in range(400)]
    assert 150 < sum(flips) < 250
