"""KITTI 3D-object labels (`training/label_2/<id>.txt`) and calibration (`training/calib/<id>.txt`):
read, write, and convert boxes between the camera label convention and OpenPCDet's lidar boxes.

Label line, 15 fields: type, truncated (0..1), occluded (0..3), alpha, 2D box (left top right bottom,
pixels), h w l (m), x y z (bottom centre of the box, rectified camera frame), rotation_y.
Lidar box: (x, y, z of the centre, dx = length, dy = width, dz = height, heading), OpenPCDet's layout."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import SweepError

CALIB_SHAPES = {'P0': (3, 4), 'P1': (3, 4), 'P2': (3, 4), 'P3': (3, 4), 'R0_rect': (3, 3),
                'Tr_velo_to_cam': (3, 4), 'Tr_imu_to_velo': (3, 4)}


@dataclass(frozen=True)
class Calibration:
    P2: np.ndarray              # (3, 4) rectified camera 2 projection
    R0_rect: np.ndarray         # (3, 3)
    Tr_velo_to_cam: np.ndarray  # (3, 4)

    def lidar_to_rect(self, xyz):
        """Lidar points (N, 3) in the rectified camera frame."""
        xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
        return (xyz @ self.Tr_velo_to_cam[:, :3].T + self.Tr_velo_to_cam[:, 3]) @ self.R0_rect.T

    def rect_to_lidar(self, xyz):
        """Rectified camera points (N, 3) in the lidar frame."""
        cam = np.asarray(xyz, dtype=np.float64).reshape(-1, 3) @ np.linalg.inv(self.R0_rect).T
        rotation, translation = self.Tr_velo_to_cam[:, :3], self.Tr_velo_to_cam[:, 3]
        return (cam - translation) @ np.linalg.inv(rotation).T

    def rect_to_image(self, xyz):
        """Pixel coordinates (N, 2) and depth (N,) of rectified camera points."""
        uvw = np.column_stack([xyz, np.ones(len(xyz))]) @ self.P2.T
        return uvw[:, :2] / uvw[:, 2:3], uvw[:, 2]


def format_calib(calib: Calibration) -> str:
    """The seven lines of a KITTI calib file (P0 = P1 = P2 = P3, identity IMU-to-velo)."""
    matrices = {'P0': calib.P2, 'P1': calib.P2, 'P2': calib.P2, 'P3': calib.P2, 'R0_rect': calib.R0_rect,
                'Tr_velo_to_cam': calib.Tr_velo_to_cam, 'Tr_imu_to_velo': np.eye(3, 4)}
    return ''.join(f'{key}: ' + ' '.join(f'{v:.12e}' for v in matrices[key].ravel()) + '\n' for key in CALIB_SHAPES)


def read_calib(path) -> Calibration:
    """Parse a KITTI calib file; a missing or malformed matrix raises SweepError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(path, 'calibration file not found')
    values = {}
    for line in path.read_text().splitlines():
        key, sep, rest = line.partition(':')
        if sep and key.strip() in CALIB_SHAPES:
            values[key.strip()] = rest.split()
    matrices = {}
    for key in ('P2', 'R0_rect', 'Tr_velo_to_cam'):
        shape = CALIB_SHAPES[key]
        try:
            matrices[key] = np.array(values[key], dtype=np.float64).reshape(shape)
        except KeyError:
            raise SweepError(path, f'no {key} line') from None
        except ValueError:
            raise SweepError(path, f'{key} needs {shape[0] * shape[1]} numbers, got {values[key]!r}') from None
    return Calibration(**matrices)


@dataclass(frozen=True)
class Labels:
    """The objects of one label file, as arrays (one row per object)."""
    kind: np.ndarray        # (N,) str
    truncated: np.ndarray   # (N,)
    occluded: np.ndarray    # (N,) int
    alpha: np.ndarray
    bbox: np.ndarray        # (N, 4) left, top, right, bottom
    hwl: np.ndarray         # (N, 3)
    location: np.ndarray    # (N, 3) bottom centre, rectified camera frame
    rotation_y: np.ndarray  # (N,)

    def __len__(self):
        return len(self.kind)


def read_labels(path) -> Labels:
    """Parse a KITTI label_2 file (15 fields a line, a 16th score allowed); bad lines raise SweepError."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(path, 'label file not found')
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in (15, 16):
            raise SweepError(path, f'line {number} has {len(fields)} fields, KITTI labels have 15')
        try:
            rows.append((fields[0], *map(float, fields[1:15])))
        except ValueError:
            raise SweepError(path, f'line {number} has a non-numeric field: {line!r}') from None
    numbers = np.array([r[1:] for r in rows], dtype=np.float64).reshape(-1, 14)
    return Labels(np.array([r[0] for r in rows], dtype=str), numbers[:, 0], numbers[:, 1].astype(int),
                  numbers[:, 2], numbers[:, 3:7], numbers[:, 7:10], numbers[:, 10:13], numbers[:, 13])


def format_labels(labels: Labels) -> str:
    """KITTI label_2 text, one object a line."""
    lines = []
    for i in range(len(labels)):
        numbers = [labels.truncated[i], labels.occluded[i], labels.alpha[i], *labels.bbox[i], *labels.hwl[i],
                   *labels.location[i], labels.rotation_y[i]]
        lines.append(f'{labels.kind[i]} {numbers[0]:.2f} {int(numbers[1])} '
                     + ' '.join(f'{v:.2f}' for v in numbers[2:]) + '\n')
    return ''.join(lines)


def wrap_angle(angle):
    """Angle(s) in [-pi, pi)."""
    return np.mod(np.asarray(angle) + np.pi, 2 * np.pi) - np.pi


def labels_to_lidar_boxes(labels: Labels, calib: Calibration) -> np.ndarray:
    """(N, 7) lidar boxes (x, y, z centre, length, width, height, heading) of the labels."""
    h, w, l = labels.hwl.T
    centre = calib.rect_to_lidar(labels.location)
    centre[:, 2] += h / 2  # the label's location is the bottom centre
    return np.column_stack([centre, l, w, h, wrap_angle(-labels.rotation_y - np.pi / 2)])


def lidar_boxes_to_camera(boxes: np.ndarray, calib: Calibration) -> tuple:
    """(hwl (N, 3), bottom-centre location (N, 3), rotation_y (N,)) of lidar boxes (N, 7)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    bottom = boxes[:, :3] - np.column_stack([np.zeros((len(boxes), 2)), boxes[:, 5] / 2])
    return boxes[:, [5, 4, 3]], calib.lidar_to_rect(bottom), wrap_angle(-boxes[:, 6] - np.pi / 2)


def box_corners(boxes: np.ndarray) -> np.ndarray:
    """(N, 8, 3) corners of lidar boxes (N, 7): the bottom four, then the top four."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    unit = np.array([[1, 1, -1], [1, -1, -1], [-1, -1, -1], [-1, 1, -1],
                     [1, 1, 1], [1, -1, 1], [-1, -1, 1], [-1, 1, 1]], dtype=np.float64) / 2
    local = unit[None] * boxes[:, None, 3:6]
    c, s = np.cos(boxes[:, 6])[:, None], np.sin(boxes[:, 6])[:, None]
    x = local[..., 0] * c - local[..., 1] * s
    y = local[..., 0] * s + local[..., 1] * c
    return np.stack([x, y, local[..., 2]], axis=-1) + boxes[:, None, :3]


def points_in_boxes(points: np.ndarray, boxes: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """(M, N) mask: point m lies inside lidar box n enlarged by `margin` on every side."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    d = np.asarray(points, dtype=np.float64)[:, None, :3] - boxes[None, :, :3]
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    local_x, local_y = d[..., 0] * c + d[..., 1] * s, -d[..., 0] * s + d[..., 1] * c
    half = boxes[:, 3:6] / 2 + margin
    return (np.abs(local_x) <= half[:, 0]) & (np.abs(local_y) <= half[:, 1]) & (np.abs(d[..., 2]) <= half[:, 2])
