"""nuScenes LIDAR_TOP sweeps (`samples/` and `sweeps/` `.pcd.bin`), read without the nuscenes-devkit."""
import os

import numpy as np

from .errors import SweepError
from .kitti_bin import read_float32_records

NUSCENES_FIELDS = 5  # x, y, z, intensity (0-255), ring index (0-31)
NUSCENES_RINGS = 32  # LIDAR_TOP is a 32-beam Velodyne HDL-32E
OTHER_WIDTHS = (4, 6)  # float32 per point of other point-cloud records (KITTI-style; with a time field)
MIN_SHARE = 0.99
MAX_STEP_RATIO = 0.5  # `step_ratio` of a sweep read with its own record width


def ring_share(records: np.ndarray) -> float:
    """Share of the (N, 5) records whose ring (5th float) is a whole number in 0..31: all of a real sweep."""
    ring = records[:, 4]
    with np.errstate(invalid='ignore'):
        return float(((ring >= 0) & (ring < NUSCENES_RINGS) & (ring == np.round(ring))).mean()) if len(ring) else 0.0


def step_ratio(flat: np.ndarray, width: int) -> float:
    """Median distance between consecutive points over their median distance from the median point, the
    float32s read as `width` per point. A lidar stores points in firing order, so with the right width
    neighbours are close (about 0.05 for nuScenes' HDL-32E); a wrong width mixes the fields (above 1)."""
    xyz = flat[:len(flat) // width * width].reshape(-1, width)[:, :3].astype(np.float64)
    with np.errstate(invalid='ignore', over='ignore'):
        step = np.median(np.linalg.norm(np.diff(xyz, axis=0), axis=1))
        spread = np.median(np.linalg.norm(xyz - np.median(xyz, axis=0), axis=1))
    return float(step / spread) if spread > 0 else np.inf


def not_nuscenes(path, size: int) -> SweepError:
    """The error for a file that is not nuScenes records, naming the record width it reads as, if any."""
    reason = (f"not nuScenes' {NUSCENES_FIELDS}-float records (x, y, z, intensity, ring with the ring a whole "
              f"number 0-{NUSCENES_RINGS - 1})")
    flat = np.fromfile(path, dtype=np.float32)
    ratios = {width: step_ratio(flat, width) for width in OTHER_WIDTHS if size % (4 * width) == 0}
    width = min(ratios, key=ratios.get, default=None)
    if width is not None and ratios[width] < MAX_STEP_RATIO:
        return SweepError(path, f'{reason}: its {size} bytes read as {width} float32 per point')
    return SweepError(path, reason)


def read_nuscenes_lidar(path) -> np.ndarray:
    """(N, 5) float32 x, y, z, intensity / 255, timestamp 0 in the LIDAR_TOP frame.

    The ring index is dropped; timestamp is the time lag OpenPCDet appends when it merges sweeps, 0 for a
    single sweep. A file cut inside a record whose whole records are nuScenes' is `truncated`; a file of
    other records (4 or 6 floats per point, other bytes) raises SweepError saying it is not nuScenes'."""
    try:
        raw = read_float32_records(path, NUSCENES_FIELDS)
    except SweepError as err:
        if not err.reason.startswith('truncated'):
            raise
        size = os.path.getsize(path)
        whole = np.fromfile(path, dtype=np.float32, count=size // (4 * NUSCENES_FIELDS) * NUSCENES_FIELDS)
        if ring_share(whole.reshape(-1, NUSCENES_FIELDS)) >= MIN_SHARE:
            raise
        raise not_nuscenes(path, size) from err
    if ring_share(raw) < MIN_SHARE:
        raise not_nuscenes(path, raw.size * 4)
    points = raw.copy()
    points[:, 3] /= 255.0
    points[:, 4] = 0.0
    return points
