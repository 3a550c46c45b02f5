"""What makes a sweep usable: the one verdict training and tools/scan_dataset.py both apply.

A sweep is refused (SweepError naming the file and the reason) when it has
- fewer than MIN_POINTS points: every supported lidar returns tens of thousands per sweep (HDL-64 ~120k,
  nuScenes' HDL-32E ~34k, Waymo's TOP ~150k), so a few points is a broken recording;
- less than MIN_PLAUSIBLE_SHARE of its points finite, within PLAUSIBLE_RANGE_M of the sensor and with an
  intensity inside the layout's range (`SweepSource.INTENSITY_RANGE`). Real sweeps pass with every point;
  other bytes read as float32 records (float64 arrays, images, compressed files, another layout's records)
  give coordinates with random exponents and fail by far;
- any NaN/inf value;
- fewer than MIN_VOXELS distinct voxels inside POINT_CLOUD_RANGE: a batch must never reach the network with
  a handful of voxels (BatchNorm needs more than one value per channel, also after the backbone's strides).
"""
import numpy as np

from .ray_origins import RayOrigins
from .readers import SweepError

MIN_POINTS = 1000
PLAUSIBLE_RANGE_M = 1000.0
MIN_PLAUSIBLE_SHARE = 0.99
MIN_VOXELS = 100


def inside_range(xyz: np.ndarray, point_cloud_range) -> np.ndarray:
    """Mask of the points inside [x0, x1) x [y0, y1) x [z0, z1): the cells the voxelizer keeps."""
    inside = np.ones(len(xyz), dtype=bool)
    for axis in range(3):  # column by column: an (N, 3) compare + row-wise np.all is ~5x slower
        column = xyz[:, axis]
        inside &= (column >= point_cloud_range[axis]) & (column < point_cloud_range[axis + 3])
    return inside


def plausible_share(points: np.ndarray, origin, intensity_column, intensity_range) -> float:
    """Share of the points that are finite, within PLAUSIBLE_RANGE_M of the sensor (`origin` as `read` returns
    it: a position, or a RayOrigins whose lidars are metres apart, so any will do) and, when the layout has an
    intensity column and an `intensity_range` (not None), with an intensity inside it (inclusive). NaN, inf
    and overflowing squares fail the comparisons, so float32 arithmetic suffices."""
    sensor = np.asarray(origin.table[0] if isinstance(origin, RayOrigins) else origin, dtype=np.float32)
    with np.errstate(invalid='ignore', over='ignore'):
        squared = np.zeros(len(points), dtype=np.float32)
        for axis in range(3):
            squared += np.square(points[:, axis] - sensor[axis])
        ok = squared <= np.float32(PLAUSIBLE_RANGE_M ** 2)
        if intensity_column is not None and intensity_range is not None:
            intensity = points[:, intensity_column]
            ok &= (intensity >= intensity_range[0]) & (intensity <= intensity_range[1])
    return float(ok.mean()) if len(points) else 0.0


def voxel_count(xyz: np.ndarray, point_cloud_range, voxel_size, enough: int = None) -> int:
    """Distinct voxels of points that all lie inside the range. With `enough`, the count may stop early at any
    value of at least `enough` (a spread-out subset is counted first: its distinct voxels are a lower bound)."""
    low, size = np.asarray(point_cloud_range[:3], np.float32), np.asarray(voxel_size, np.float32)
    extent = np.round((np.asarray(point_cloud_range[3:], np.float32) - low) / size).astype(np.int64) + 1

    def distinct(subset):
        cells = np.floor((subset - low) / size).astype(np.int64)
        return len(np.unique((cells[:, 0] * extent[1] + cells[:, 1]) * extent[2] + cells[:, 2]))
    if enough is not None and len(xyz) > 8 * enough:
        lower_bound = distinct(xyz[::len(xyz) // (8 * enough)])
        if lower_bound >= enough:
            return lower_bound
    return distinct(xyz)


def check_sweep(points: np.ndarray, origin, where, source, point_cloud_range, voxel_size) -> int:
    """Raise SweepError(where, reason) for an unusable sweep of `source`'s layout (see the module
    docstring); return how many of its points lie inside POINT_CLOUD_RANGE. `origin` is what `read`
    returned (a position or a RayOrigins)."""
    count = len(points)
    if count == 0:
        raise SweepError(where, 'empty sweep (0 points)')
    if count < MIN_POINTS:
        raise SweepError(where, f'only {count} points (at least {MIN_POINTS}; a lidar sweep has tens of thousands)')
    intensity_column = source.FEATURES.index('intensity') if 'intensity' in source.FEATURES else None
    share = plausible_share(points, origin, intensity_column, source.INTENSITY_RANGE)
    if share < MIN_PLAUSIBLE_SHARE:
        bounds = source.INTENSITY_RANGE
        intensity = f' and with intensity in [{bounds[0]:g}, {bounds[1]:g}]' if bounds else ''
        raise SweepError(where, f'implausible values: only {share:.1%} of {count} points are finite, within '
                                f'{PLAUSIBLE_RANGE_M:g} m of the sensor{intensity} '
                                f'(at least {MIN_PLAUSIBLE_SHARE:.0%} expected): not a {type(source).__name__} '
                                f'sweep (another format, or float64 data?)')
    if not np.isfinite(points).all():
        bad = int((~np.isfinite(points).all(axis=1)).sum())
        raise SweepError(where, f'{bad} of {count} points have NaN/inf values')
    xyz = points[:, :3]
    inside = inside_range(xyz, point_cloud_range)
    if not inside.any():
        raise SweepError(where, 'no point inside POINT_CLOUD_RANGE')
    voxels = voxel_count(xyz[inside], point_cloud_range, voxel_size, enough=MIN_VOXELS)
    if voxels < MIN_VOXELS:
        raise SweepError(where, f'only {voxels} voxels inside POINT_CLOUD_RANGE (at least {MIN_VOXELS})')
    return int(inside.sum())
