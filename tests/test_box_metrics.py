"""Box metrics on hand-made cases with known answers: rotated IoU, matching, R40 AP."""
import numpy as np
import pytest

from also_pcdet.engine.box_metrics import (average_precision_r40, bev_iou, car_metrics, centre_distance,
                                           detection_ap, iou_3d)

CAR = np.array([10.0, 2.0, -0.9, 4.0, 2.0, 1.5, 0.3])


def shifted(box, dx=0.0, dy=0.0, dz=0.0, dyaw=0.0):
    return box + np.array([dx, dy, dz, 0, 0, 0, dyaw])


def test_rotated_bev_and_3d_iou_known_values():
    # shifted 1 m along its own length: overlap 3 x 2 over 8 + 8 - 6
    along = shifted(CAR, dx=np.cos(0.3), dy=np.sin(0.3))
    assert bev_iou(CAR, along)[0, 0] == pytest.approx(0.6)
    # a unit square and the same square turned 45 deg: the octagon of area 2 (sqrt 2 - 1)
    square = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    octagon = 2 * (np.sqrt(2) - 1)
    assert bev_iou(square, shifted(square, dyaw=np.pi / 4))[0, 0] == pytest.approx(octagon / (2 - octagon))
    # 3D: same footprint, lifted by half its height -> 0.75 / 1.25 of the volume
    assert iou_3d(CAR, shifted(CAR, dz=0.75))[0, 0] == pytest.approx(0.5 / 1.5)
    assert bev_iou(CAR, shifted(CAR, dz=0.75))[0, 0] == pytest.approx(1.0)
    # heading is a direction: turned by pi is the same footprint; far away is no overlap
    assert bev_iou(CAR, shifted(CAR, dyaw=np.pi))[0, 0] == pytest.approx(1.0)
    assert bev_iou(CAR, shifted(CAR, dx=10.0))[0, 0] == 0.0
    assert centre_distance(CAR, shifted(CAR, dx=3.0, dy=4.0))[0, 0] == pytest.approx(5.0)


def frame(boxes, scores, gt, ignore=()):
    return {'boxes': np.array(boxes).reshape(-1, 7), 'scores': np.array(scores, float),
            'gt': np.array(gt).reshape(-1, 7), 'ignore': np.array(ignore).reshape(-1, 7)}


def test_perfect_boxes_give_ap_one():
    gt = [CAR, shifted(CAR, dy=5.0)]
    metrics = car_metrics([frame(gt, [0.9, 0.8], gt), frame([shifted(CAR, dx=-4)], [0.3], [shifted(CAR, dx=-4)])])
    assert all(v == pytest.approx(1.0) for v in metrics.values()), metrics


def test_shifted_boxes_give_the_right_lower_ap():
    gt = [CAR, shifted(CAR, dy=5.0)]
    off = shifted(gt[1], dx=np.cos(0.3), dy=np.sin(0.3))  # BEV IoU 0.6 with its car, centre 1 m away
    # the good box scores higher: recall 1/2 at precision 1, never more -> 20 of 40 recall points
    assert detection_ap([frame([CAR, off], [0.9, 0.8], gt)], 'bev', 0.7) == pytest.approx(0.5)
    # the shifted box scores higher: recall 1/2 reached at precision 1/2
    assert detection_ap([frame([CAR, off], [0.8, 0.9], gt)], 'bev', 0.7) == pytest.approx(0.25)
    # at IoU 0.5 both match; within 0.5 m only one does, within 2 m both
    assert detection_ap([frame([CAR, off], [0.8, 0.9], gt)], 'bev', 0.5) == pytest.approx(1.0)
    assert detection_ap([frame([CAR, off], [0.8, 0.9], gt)], 'distance', 0.5) == pytest.approx(0.25)
    assert detection_ap([frame([CAR, off], [0.8, 0.9], gt)], 'distance', 2.0) == pytest.approx(1.0)


def test_duplicates_and_ignored_boxes():
    # a duplicate of a matched car is a false positive
    assert detection_ap([frame([CAR, CAR], [0.9, 0.8], [CAR])], 'bev', 0.7) == pytest.approx(1.0)
    assert detection_ap([frame([CAR, CAR], [0.8, 0.9], [CAR])], 'bev', 0.7) == pytest.approx(1.0)
    van = shifted(CAR, dy=-6.0)
    # a higher-scored detection on an ignored van counts neither way; unignored it halves the precision
    assert detection_ap([frame([van, CAR], [0.9, 0.8], [CAR], [van])], 'bev', 0.7) == pytest.approx(1.0)
    assert detection_ap([frame([van, CAR], [0.9, 0.8], [CAR])], 'bev', 0.7) == pytest.approx(0.5)


def test_r40_interpolation_and_empty_cases():
    # 4 cars; TP FP TP TP: recall .25 .25 .5 .75 at precision 1 .5 .67 .75: the best precision at or above
    # recall r is 1 for the 10 points r <= .25, .75 for the 20 points up to .75, 0 beyond
    ap = average_precision_r40([4, 3, 2, 1], [True, False, True, True], 4)
    assert ap == pytest.approx((10 * 1.0 + 20 * 0.75) / 40)
    assert average_precision_r40([], [], 3) == 0.0
    assert np.isnan(average_precision_r40([0.5], [False], 0))
