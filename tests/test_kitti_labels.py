"""Synthetic KITTI 3D-object labels: KITTI's conventions (checked on hand-made boxes), round trips through the
files, and the boxes contain the ray-cast objects' points."""
import matplotlib.image
import numpy as np
import pytest

from also_pcdet.datasets.readers import SweepError
from also_pcdet.datasets.readers.kitti_label import (box_corners, format_labels, labels_to_lidar_boxes,
                                                     lidar_boxes_to_camera, points_in_boxes, read_calib,
                                                     read_labels)
from also_pcdet.datasets.synthetic import LidarModel, write_kitti_object
from also_pcdet.datasets.synthetic.kitti_writer import (IMAGE_SIZE, OBJECT_MARGIN, SYNTHETIC_CALIB, kitti_labels,
                                                        make_sweep, object_boxes)
from also_pcdet.datasets.synthetic.scene import PERSON, VEHICLE
from also_pcdet.engine.detection_probe import in_camera_view

FAST = LidarModel(azimuth_step_deg=0.5)


def test_camera_convention_on_a_hand_made_box():
    # a car 10 m ahead, 2 m to the left, heading along the lidar's x axis (KITTI: rotation_y = -pi/2)
    box = np.array([[10.0, 2.0, -1.0, 4.2, 1.8, 1.5, 0.0]])
    hwl, location, rotation_y = lidar_boxes_to_camera(box, SYNTHETIC_CALIB)
    np.testing.assert_allclose(hwl, [[1.5, 1.8, 4.2]])
    np.testing.assert_allclose(location, [[-2.0, 1.75, 10.0]])  # x right, y down (bottom face), z forward
    assert rotation_y[0] == pytest.approx(-np.pi / 2)
    turned = lidar_boxes_to_camera(box + [0, 0, 0, 0, 0, 0, np.pi / 2], SYNTHETIC_CALIB)[2]  # facing left
    assert abs(turned[0]) == pytest.approx(np.pi)
    xyz = np.random.default_rng(0).normal(size=(20, 3))
    np.testing.assert_allclose(SYNTHETIC_CALIB.rect_to_lidar(SYNTHETIC_CALIB.lidar_to_rect(xyz)), xyz, atol=1e-12)
    uv, depth = SYNTHETIC_CALIB.rect_to_image(SYNTHETIC_CALIB.lidar_to_rect([[20.0, 0.0, 0.0]]))
    np.testing.assert_allclose(uv, [[609.5593, 172.854]])  # straight ahead lands on the principal point
    assert depth[0] == pytest.approx(20.0)
    corners = box_corners(box)[0]
    assert points_in_boxes(corners * 0.999 + box[0, :3] * 0.001, box).all()
    assert not points_in_boxes(box[:, :3] + [[2.2, 0, 0]], box).any()


def test_labels_round_trip_and_contain_the_objects_points(tmp_path):
    write_kitti_object(tmp_path, num_sweeps=3, seed=5, val_every=3, lidar=FAST)
    training = tmp_path / 'training'
    assert (tmp_path / 'ImageSets' / 'test.txt').read_text() == ''
    lines = (training / 'calib' / '000001.txt').read_text().splitlines()
    # OpenPCDet's calibration reader takes P2, R0_rect and Tr_velo_to_cam by line position
    assert [line.split(':')[0] for line in lines] == ['P0', 'P1', 'P2', 'P3', 'R0_rect', 'Tr_velo_to_cam',
                                                      'Tr_imu_to_velo']
    assert [len(line.split()) - 1 for line in lines] == [12, 12, 12, 12, 9, 12, 12]
    image = matplotlib.image.imread(training / 'image_2' / '000001.png')
    assert image.shape == (IMAGE_SIZE[1], IMAGE_SIZE[0], 3)
    plane = np.array((training / 'planes' / '000001.txt').read_text().splitlines()[3].split(), dtype=float)
    np.testing.assert_allclose(plane, [0, -1, 0, FAST.mount_height])  # ground: camera y = mount height

    total = 0
    for i in range(3):
        sweep = make_sweep(5, i, FAST)
        calib = read_calib(training / 'calib' / f'{i:06d}.txt')
        labels = read_labels(training / 'label_2' / f'{i:06d}.txt')
        expected_labels, expected_boxes = kitti_labels(sweep, FAST)
        assert list(labels.kind) == list(expected_labels.kind) and len(labels) > 0
        assert set(labels.kind) <= {'Car', 'Van', 'Truck', 'Pedestrian'}
        boxes = labels_to_lidar_boxes(labels, calib)
        np.testing.assert_allclose(boxes[:, :6], expected_boxes[:, :6], atol=0.006)  # 2 decimals in the file
        np.testing.assert_allclose(np.cos(boxes[:, 6] - expected_boxes[:, 6]), 1.0, atol=1e-4)
        assert ((labels.truncated >= 0) & (labels.truncated <= 1)).all() and set(labels.occluded) <= {0, 1, 2}
        assert ((labels.bbox[:, 0] < labels.bbox[:, 2]) & (labels.bbox[:, 1] < labels.bbox[:, 3])).all()
        assert (labels.bbox >= 0).all() and (labels.bbox[:, 2] < IMAGE_SIZE[0]).all()

        points = sweep['points'][:, :3]
        inside = points_in_boxes(points, boxes, OBJECT_MARGIN)
        assert inside.any(0).all()  # every labelled box holds returns
        # every return of a car or person in the camera's view lies in a labelled box, unless its object was
        # left out (its centre behind the camera)
        objects = np.isin(sweep['labels'], (VEHICLE, PERSON)) & in_camera_view(points, calib)
        all_boxes = object_boxes(sweep['scene'], FAST)
        in_front = SYNTHETIC_CALIB.lidar_to_rect(all_boxes[:, :3])[:, 2] > 0.5
        owned = points_in_boxes(points[objects], all_boxes[in_front], OBJECT_MARGIN).any(1)
        assert owned.mean() > 0.99
        assert inside[objects][owned].any(1).all()
        # nothing but cars and people is inside the boxes (shrunk by the margin: ground under the wheels)
        shrunk = boxes - np.hstack([np.zeros((len(boxes), 3)), np.full((len(boxes), 3), 2 * OBJECT_MARGIN),
                                    np.zeros((len(boxes), 1))])
        assert np.isin(sweep['labels'][points_in_boxes(points, shrunk).any(1)], (VEHICLE, PERSON)).all()
        total += len(labels)
    assert total > 10


@pytest.mark.parametrize('text, problem', [('Car 0 0 0 1 2 3 4 1.5 1.8 4\n', 'has 11 fields'),
                                           ('Car 0 0 0 1 2 3 4 1.5 1.8 4 x 1 2 0\n', 'non-numeric')])
def test_bad_label_file_names_the_file(tmp_path, text, problem):
    path = tmp_path / '000007.txt'
    path.write_text(text)
    with pytest.raises(SweepError, match=problem) as err:
        read_labels(path)
    assert '000007.txt' in str(err.value)


def test_bad_calib_file_names_the_file(tmp_path):
    path = tmp_path / '000007.txt'
    path.write_text('P2: 1 2 3\nR0_rect: 1 0 0 0 1 0 0 0 1\n')
    with pytest.raises(SweepError, match='P2 needs 12 numbers') as err:
        read_calib(path)
    assert '000007.txt' in str(err.value)
    with pytest.raises(SweepError, match='not found'):
        read_calib(tmp_path / 'missing.txt')


def test_empty_label_file_gives_no_boxes(tmp_path):
    (tmp_path / 'a.txt').write_text('')
    labels = read_labels(tmp_path / 'a.txt')
    assert len(labels) == 0 and labels_to_lidar_boxes(labels, SYNTHETIC_CALIB).shape == (0, 7)
    assert format_labels(labels) == ''
