"""Synthetic ray-cast lidar: geometry, occlusion, sensor structure and the KITTI writer."""
import numpy as np
import pytest

from also_pcdet.datasets.synthetic import (CLASS_NAMES, HDL64, LidarModel, cast_rays, make_scene, scan,
                                           write_kitti_object)
from also_pcdet.datasets.synthetic.scene import BUILDING, GROUND, PERSON, VEHICLE, Boxes, Cylinders, Ground, Scene

ORIGIN = np.array([0.0, 0.0, HDL64.mount_height])
FAST = LidarModel(azimuth_step_deg=0.5)  # coarse sweeps for the file tests


@pytest.fixture(scope='module')
def street():
    rng = np.random.default_rng(7)
    scene = make_scene(rng)
    return scene, scan(scene, rng=rng)


def _scene(boxes=(), cylinders=()):
    return Scene(Ground(), Boxes.from_rows(boxes), Cylinders.from_rows(cylinders))


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_lidar_model_is_hdl64_like():
    inc = np.degrees(HDL64.inclinations)
    assert HDL64.num_beams == 64 and np.all(np.diff(inc) < 0)
    assert inc[0] == pytest.approx(2.0) and inc[-1] == pytest.approx(-24.8)
    assert 2000 <= HDL64.num_azimuths <= 2200
    d = HDL64.directions()
    assert d.shape == (64, HDL64.num_azimuths, 3) and np.allclose(np.linalg.norm(d, axis=-1), 1.0)


def test_analytic_intersections():
    boxes = [(10, 0, 1, 2, 2, 2, 0, VEHICLE, 0.5),                 # faces at x = 9 and 11
             (20, 0, 5, 2, 20, 10, 0, BUILDING, 0.6),              # wall behind it
             (0, 10, 1, 2, 2, 2, np.pi / 4, BUILDING, 0.3)]        # diamond, corner at y = 10 - sqrt(2)
    cylinders = [(-10, 0, 0, 2, 0.5, PERSON, 0.4), (-20, 0, 0, 5, 1.0, BUILDING, 0.2)]
    dirs = _unit([[1, 0, 0], [0, 1, 0], [-1, 0, 0], [-10, 0, 1 - ORIGIN[2]], [0, -1, 0], [1, 0, 1],
                  [0, 0, -1], [-10, -0.3, 0], [1, 0.2, 0]])
    r, cls, refl, cos = cast_rays(_scene(boxes, cylinders), ORIGIN, dirs, 100.0)
    expect = [9.0, 10 - np.sqrt(2), 9.5, 0.95 * np.hypot(10, 1 - ORIGIN[2]), np.inf, np.inf, ORIGIN[2],
              100 / np.hypot(10, 0.3) - np.sqrt(0.25 - (3 / np.hypot(10, 0.3)) ** 2), np.hypot(19, 3.8)]
    assert np.allclose(r, expect)
    assert cls.tolist() == [VEHICLE, BUILDING, PERSON, PERSON, 255, 255, GROUND, PERSON, BUILDING]
    assert np.allclose(refl[[0, 1, 2, 3, 8]], [0.5, 0.3, 0.4, 0.4, 0.6]) and refl[6] > 0
    assert np.allclose(cos[[0, 2, 6]], 1.0) and cos[1] == pytest.approx(np.cos(np.pi / 4))
    # from above, a cylinder is hit on its cap and a box on its top face
    top = cast_rays(_scene(boxes, cylinders), (-10, 0, 5), _unit([[0, 0, -1], [20, 0, -3]]), 100.0)
    assert np.allclose(top[0], [3.0, np.hypot(20, 3)]) and top[1].tolist() == [PERSON, VEHICLE]
    assert np.allclose(top[3], [1.0, 3 / np.hypot(20, 3)])
    # a ray just across the +-pi seam still finds the cylinder behind the sensor
    assert np.arctan2(dirs[7, 1], dirs[7, 0]) < -3.1


def test_occlusion_shadow_behind_box():
    scene = _scene([(10, 0, 0.75, 4.2, 1.8, 1.5, 0.0, VEHICLE, 0.5)])
    out = scan(scene, rng=np.random.default_rng(0))
    p, lab = out['points'], out['labels']
    az = np.arctan2(p[:, 1], p[:, 0])
    behind = (np.abs(az) < np.arctan2(0.85, 12.1)) & (p[:, 0] > 7.9)
    assert np.any(lab == VEHICLE) and np.all(lab[behind] == VEHICLE)
    assert np.any((lab == GROUND) & (np.abs(az) > 0.2) & (np.hypot(p[:, 0], p[:, 1]) > 15))


def test_points_lie_on_surfaces(street):
    scene, out = street
    p = out['points'][:, :3].astype(np.float64)
    r = np.linalg.norm(p, axis=1)
    recast, cls, _, _ = cast_rays(scene, ORIGIN, p / r[:, None], HDL64.max_range)
    err = r - recast
    assert np.all(np.abs(err) < 6 * HDL64.range_noise) and err.std() == pytest.approx(HDL64.range_noise, rel=0.1)
    assert np.mean(cls == out['labels']) > 0.999  # ties at shared edges may flip a label


def test_ideal_sensor_is_exact(street):
    scene, _ = street
    out = scan(scene)
    p = out['points'][:, :3].astype(np.float64)
    r = np.linalg.norm(p, axis=1)
    recast = cast_rays(scene, ORIGIN, p / r[:, None], HDL64.max_range)[0]
    assert np.allclose(recast, r, atol=1e-4)
    assert len(out['points']) > len(street[1]['points'])  # noisy sweep loses dropouts


def test_no_point_inside_primitives(street):
    scene, out = street
    w = out['points'][:, :3].astype(np.float64) + ORIGIN
    margin = 6 * HDL64.range_noise
    b = scene.boxes
    for c, half, yaw in zip(b.center, b.size / 2, b.yaw):
        rel = w - c
        x = np.cos(yaw) * rel[:, 0] + np.sin(yaw) * rel[:, 1]
        y = -np.sin(yaw) * rel[:, 0] + np.cos(yaw) * rel[:, 1]
        inside = ((np.abs(x) < half[0] - margin) & (np.abs(y) < half[1] - margin)
                  & (np.abs(rel[:, 2]) < half[2] - margin))
        assert not inside.any()
    cy = scene.cylinders
    for c, z0, z1, rad in zip(cy.center, cy.z0, cy.z1, cy.radius):
        inside = ((np.hypot(*(w[:, :2] - c).T) < rad - margin) & (w[:, 2] > z0 + margin) & (w[:, 2] < z1 - margin))
        assert not inside.any()


def test_one_return_per_ray_and_images(street):
    _, out = street
    p, ring = out['points'], out['ring'].astype(np.int64)
    n_az = len(out['azimuths'])
    step = 2 * np.pi / n_az
    col = np.floor((np.pi - np.arctan2(p[:, 1], p[:, 0])) / step).astype(np.int64) % n_az
    assert len(np.unique(ring * n_az + col)) == len(p) == np.count_nonzero(out['range_image'])
    assert np.allclose(out['range_image'][ring, col], np.linalg.norm(p[:, :3], axis=1), atol=1e-4)
    assert np.array_equal(out['label_image'][ring, col], out['labels'])
    assert np.array_equal(out['intensity_image'][ring, col], p[:, 3])
    assert np.all(out['label_image'][out['range_image'] == 0] == 255)


def test_ring_structure(street):
    _, out = street
    p, ring = out['points'].astype(np.float64), out['ring']
    elevation = np.arctan2(p[:, 2], np.hypot(p[:, 0], p[:, 1]))
    assert np.all(np.abs(elevation - out['inclinations'][ring]) < 1e-4)
    assert len(np.unique(ring)) == HDL64.num_beams


def test_typical_sweep(street):
    _, out = street
    p, lab = out['points'], out['labels']
    assert p.dtype == np.float32 and p.shape[1] == 4 and lab.dtype == np.uint8 and out['ring'].dtype == np.uint8
    assert 100_000 <= len(p) <= 135_000
    assert set(np.unique(lab)) == set(range(len(CLASS_NAMES)))
    assert p[:, 3].min() >= 0 and p[:, 3].max() <= 1 and p[:, 3].std() > 0.05
    r = np.linalg.norm(p[:, :3], axis=1)
    assert r.min() >= HDL64.min_range and r.max() <= HDL64.max_range
    ground = lab == GROUND
    assert np.median(p[ground, 2]) == pytest.approx(-HDL64.mount_height, abs=0.05)
    assert np.mean(r < 20) > np.mean(r > 40)  # density falls with range
    # the KITTI detection box is covered
    kitti = (p[:, 0] > 0) & (p[:, 0] < 70.4) & (np.abs(p[:, 1]) < 40)
    assert np.sum(kitti & (p[:, 0] > 40)) > 1000


def test_sensor_position_shifts_frame():
    scene = _scene([(10, 0, 1, 2, 2, 2, 0, VEHICLE, 0.5)])
    out = scan(scene, sensor_position=(2.0, 0.0, 0.0))
    p = out['points'][out['labels'] == VEHICLE]
    front = np.abs(p[:, 1]) < 0.2
    assert np.allclose(p[front, 0].min(), 7.0, atol=1e-3)


def test_kitti_object_writer(tmp_path):
    write_kitti_object(tmp_path / 'a', num_sweeps=7, seed=3, val_every=3, lidar=FAST)
    root = tmp_path / 'a'
    for i in range(7):
        pts = np.fromfile(root / 'training' / 'velodyne' / f'{i:06d}.bin', dtype=np.float32).reshape(-1, 4)
        lab = np.fromfile(root / 'training' / 'semantic' / f'{i:06d}.label', dtype=np.uint32)
        assert len(pts) == len(lab) > 10_000 and lab.max() < len(CLASS_NAMES)
        assert np.median(pts[lab == GROUND, 2]) == pytest.approx(-FAST.mount_height, abs=0.05)
    assert (root / 'ImageSets' / 'val.txt').read_text().split() == ['000000', '000003', '000006']
    assert (root / 'ImageSets' / 'train.txt').read_text().split() == ['000001', '000002', '000004', '000005']


def test_writer_is_deterministic(tmp_path):
    def files(name, seed, workers=1):
        write_kitti_object(tmp_path / name, num_sweeps=2, seed=seed, lidar=FAST, workers=workers)
        return [(tmp_path / name / 'training' / sub / f'{i:06d}.{ext}').read_bytes()
                for i in range(2) for sub, ext in (('velodyne', 'bin'), ('semantic', 'label'))]

    a = files('a', 0)
    assert a == files('b', 0, workers=2)
    assert a[0] != a[2]  # each sweep has its own scene
    assert all(x != y for x, y in zip(a[::2], files('c', 1)[::2]))
