"""Detection metrics on lidar boxes (x, y, z centre, length, width, height, heading), NumPy only.

Rotated BEV IoU by convex polygon clipping, 3D IoU (BEV intersection x z overlap), greedy score-ordered
matching with ignored ground truth, and KITTI's 40-recall-point AP (R40: the mean over recall 1/40 ... 1 of
the best precision at that recall or above)."""
import numpy as np

from ..datasets.readers.kitti_label import box_corners

R40 = np.linspace(1 / 40, 1.0, 40)
DISTANCE_THRESHOLDS = (0.5, 1.0, 2.0, 4.0)  # m, nuScenes' centre-distance thresholds


def _clip(polygon, a, b):
    """The part of a convex polygon (K, 2) left of the directed edge a -> b (Sutherland-Hodgman step)."""
    def side(p):
        return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])
    out = []
    for i in range(len(polygon)):
        p, q = polygon[i], polygon[(i + 1) % len(polygon)]
        sp, sq = side(p), side(q)
        if sp >= 0:
            out.append(p)
        if sp * sq < 0:
            out.append(p + (q - p) * (sp / (sp - sq)))
    return np.array(out).reshape(-1, 2)


def _area(polygon):
    if len(polygon) < 3:
        return 0.0
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def bev_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) area of the BEV intersection of the rotated boxes a (N, 7) and b (M, 7)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 7), np.asarray(b, np.float64).reshape(-1, 7)
    quads_a, quads_b = box_corners(a)[:, 3::-1, :2], box_corners(b)[:, 3::-1, :2]  # counter-clockwise
    reach = np.hypot(a[:, None, 3] + b[None, :, 3], a[:, None, 4] + b[None, :, 4]) / 2
    near = np.hypot(*(a[:, None, :2] - b[None, :, :2]).transpose(2, 0, 1)) < reach
    inter = np.zeros((len(a), len(b)))
    for i, j in zip(*np.nonzero(near)):
        polygon = quads_a[i]
        for k in range(4):
            polygon = _clip(polygon, quads_b[j][k], quads_b[j][(k + 1) % 4])
            if len(polygon) == 0:
                break
        inter[i, j] = _area(polygon)
    return inter


def bev_iou(a, b) -> np.ndarray:
    """(N, M) rotated BEV IoU."""
    a, b = np.asarray(a, np.float64).reshape(-1, 7), np.asarray(b, np.float64).reshape(-1, 7)
    inter = bev_intersection(a, b)
    union = (a[:, 3] * a[:, 4])[:, None] + (b[:, 3] * b[:, 4])[None] - inter
    return inter / np.maximum(union, 1e-12)


def iou_3d(a, b) -> np.ndarray:
    """(N, M) 3D IoU of boxes rotated about z: BEV intersection times the z overlap over the union volume."""
    a, b = np.asarray(a, np.float64).reshape(-1, 7), np.asarray(b, np.float64).reshape(-1, 7)
    top = np.minimum((a[:, 2] + a[:, 5] / 2)[:, None], (b[:, 2] + b[:, 5] / 2)[None])
    bottom = np.maximum((a[:, 2] - a[:, 5] / 2)[:, None], (b[:, 2] - b[:, 5] / 2)[None])
    inter = bev_intersection(a, b) * np.maximum(top - bottom, 0.0)
    union = np.prod(a[:, 3:6], 1)[:, None] + np.prod(b[:, 3:6], 1)[None] - inter
    return inter / np.maximum(union, 1e-12)


def centre_distance(a, b) -> np.ndarray:
    """(N, M) BEV distance between box centres."""
    a, b = np.asarray(a, np.float64).reshape(-1, 7), np.asarray(b, np.float64).reshape(-1, 7)
    return np.hypot(*(a[:, None, :2] - b[None, :, :2]).transpose(2, 0, 1))


def match_frame(scores, affinity, ignore_affinity, threshold, larger_is_better=True):
    """Greedy matching of one frame's detections, best score first, each to the unmatched ground truth box
    it fits best (affinity (D, G) at least / at most `threshold`). Returns is_tp (D,) and counted (D,):
    an unmatched detection that fits an ignored box (ignore_affinity (D, I)) is not counted."""
    sign = 1.0 if larger_is_better else -1.0
    good = sign * affinity >= sign * threshold
    is_tp, counted = np.zeros(len(scores), bool), np.ones(len(scores), bool)
    taken = np.zeros(affinity.shape[1], bool)
    for d in np.argsort(-np.asarray(scores), kind='stable'):
        candidates = np.flatnonzero(good[d] & ~taken)
        if len(candidates):
            best = candidates[np.argmax(sign * affinity[d, candidates])]
            taken[best], is_tp[d] = True, True
        elif ignore_affinity.shape[1] and np.any(sign * ignore_affinity[d] >= sign * threshold):
            counted[d] = False
    return is_tp, counted


def average_precision_r40(scores, is_tp, num_gt: int) -> float:
    """KITTI's R40 AP of detections pooled over frames: precision interpolated as the best precision at any
    recall at or above each of 40 recall points; 0 for a recall point never reached. NaN without ground truth."""
    if num_gt == 0:
        return float('nan')
    order = np.argsort(-np.asarray(scores, np.float64), kind='stable')
    tp = np.cumsum(np.asarray(is_tp, bool)[order])
    recall = tp / num_gt
    precision = tp / np.arange(1, len(tp) + 1)
    best_after = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    ap = 0.0
    for r in R40:
        reached = np.flatnonzero(recall >= r - 1e-9)
        ap += best_after[reached[0]] if len(reached) else 0.0
    return ap / len(R40)


def detection_ap(frames, metric: str, threshold: float) -> float:
    """R40 AP over `frames`, each a dict with 'boxes' (D, 7) and 'scores' (D,) of the detections, 'gt' (G, 7)
    and 'ignore' (I, 7); metric 'bev' or '3d' (IoU >= threshold) or 'distance' (centre distance <= threshold)."""
    affinity_fn = {'bev': bev_iou, '3d': iou_3d, 'distance': centre_distance}[metric]
    scores, tps, num_gt = [], [], 0
    for frame in frames:
        is_tp, counted = match_frame(frame['scores'], affinity_fn(frame['boxes'], frame['gt']),
                                     affinity_fn(frame['boxes'], frame['ignore']), threshold,
                                     larger_is_better=metric != 'distance')
        scores.append(np.asarray(frame['scores'])[counted])
        tps.append(is_tp[counted])
        num_gt += len(frame['gt'])
    return average_precision_r40(np.concatenate(scores) if scores else [], np.concatenate(tps) if tps else [],
                                 num_gt)


def car_metrics(frames) -> dict:
    """The probe's numbers: BEV and 3D AP at IoU 0.7 (KITTI's car threshold) and 0.5, and the centre-distance
    AP averaged over DISTANCE_THRESHOLDS."""
    return {'bev_ap_0.7': detection_ap(frames, 'bev', 0.7), '3d_ap_0.7': detection_ap(frames, '3d', 0.7),
            'bev_ap_0.5': detection_ap(frames, 'bev', 0.5), '3d_ap_0.5': detection_ap(frames, '3d', 0.5),
            'dist_ap': float(np.mean([detection_ap(frames, 'distance', d) for d in DISTANCE_THRESHOLDS]))}
