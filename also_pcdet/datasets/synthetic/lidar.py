"""Spinning lidar model and exact, vectorized ray casting against a Scene.

Rays are culled per primitive by azimuth interval (binary search over rays sorted
by azimuth) and by elevation slope, so only plausible (ray, primitive) pairs are
intersected; the nearest hit per ray wins, which gives true occlusion shadows.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .scene import GROUND, Scene

MISS = 255
_CHUNK = 1 << 20  # (ray, primitive) pairs intersected at once
_EPS = 1e-9

_HDL64_INCLINATIONS = tuple(np.round(np.concatenate([np.linspace(2.0, -8.33, 32),
                                                     np.linspace(-8.83, -24.8, 32)]), 4))


@dataclass(frozen=True)
class LidarModel:
    """A spinning multi-beam lidar; angles in degrees, distances in metres."""
    inclinations_deg: tuple = _HDL64_INCLINATIONS
    azimuth_step_deg: float = 0.17
    max_range: float = 120.0
    min_range: float = 2.0
    mount_height: float = 1.73   # sensor height above the ground
    range_noise: float = 0.015   # std of the range error
    dropout: float = 0.03        # probability that a return is lost
    intensity_noise: float = 0.02
    falloff_range: float = 150.0  # intensity decays as exp(-range / falloff_range)
    min_return: float = 0.005    # weaker returns (reflectivity x cos x falloff) are lost

    @property
    def num_beams(self):
        return len(self.inclinations_deg)

    @property
    def num_azimuths(self):
        return int(round(360.0 / self.azimuth_step_deg))

    @property
    def inclinations(self):
        """Beam elevations in radians, highest first (range-image row order)."""
        return np.sort(np.radians(np.asarray(self.inclinations_deg, dtype=np.float64)))[::-1]

    @property
    def azimuths(self):
        """Column azimuths in radians, from behind (+pi) through left, front, right."""
        n = self.num_azimuths
        return np.pi - (np.arange(n) + 0.5) * (2 * np.pi / n)

    def directions(self):
        """Unit ray directions, shape (num_beams, num_azimuths, 3)."""
        inc, az = self.inclinations[:, None], self.azimuths[None, :]
        return np.stack(np.broadcast_arrays(np.cos(inc) * np.cos(az), np.cos(inc) * np.sin(az),
                                            np.sin(inc)), axis=-1)


HDL64 = LidarModel()


def cast_rays(scene: Scene, origin, directions, max_range):
    """Nearest hit of each ray from one origin (world frame).

    Returns (ranges (M,) with inf for a miss, class ids (M,) uint8 with 255 for a miss,
    reflectivity (M,), |cos| of the incidence angle (M,)); directions must be unit (M, 3).
    """
    origin = np.asarray(origin, dtype=np.float64)
    d = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
    m = len(d)
    best = np.full(m, np.inf)
    cls = np.full(m, MISS, dtype=np.uint8)
    refl, cos = np.zeros(m), np.zeros(m)

    dz = d[:, 2]
    with np.errstate(divide='ignore', invalid='ignore'):
        t = (scene.ground.z - origin[2]) / dz
    plane = (dz < 0) & (t > 0) & (t <= max_range) if origin[2] > scene.ground.z else np.zeros(m, bool)
    best[plane], cls[plane], cos[plane] = t[plane], GROUND, -dz[plane]

    rays = _RayIndex(d)
    for hits in (_box_hits(scene.boxes, origin, d, rays, max_range),
                 _cylinder_hits(scene.cylinders, origin, d, rays, max_range)):
        for r, t, c, rf, cs in hits:
            keep = t < best[r]
            r, t = r[keep], t[keep]
            np.minimum.at(best, r, t)
            win = t == best[r]
            r = r[win]
            cls[r], refl[r], cos[r], plane[r] = c[keep][win], rf[keep][win], cs[keep][win], False
    p = origin[:2] + best[plane, None] * d[plane, :2]
    refl[plane] = scene.ground.reflectivity(p[:, 0], p[:, 1])
    return best, cls, refl, cos


class _RayIndex:
    """Rays sorted by azimuth, with their elevation slopes, for primitive culling."""

    def __init__(self, d):
        az = np.arctan2(d[:, 1], d[:, 0])
        self.order = np.argsort(az, kind='stable')
        self.sorted_az = az[self.order]
        with np.errstate(divide='ignore', invalid='ignore'):
            self.slope = d[:, 2] / np.hypot(d[:, 0], d[:, 1])

    def pairs(self, az_lo, half_width, slope_lo, slope_hi):
        """(primitive, ray) index pairs whose azimuth is within az_lo..az_lo + 2 * half_width
        (half_width >= pi means all azimuths) and whose slope is within slope_lo..slope_hi."""
        full = half_width >= np.pi
        lo = np.where(full, -np.pi, np.mod(az_lo + np.pi, 2 * np.pi) - np.pi)
        hi = np.where(full, np.pi, lo + 2 * half_width)
        wrap = hi > np.pi  # split intervals that cross the +-pi seam
        prim = np.concatenate([np.arange(len(lo)), np.flatnonzero(wrap)])
        a0 = np.concatenate([lo, np.full(wrap.sum(), -np.pi)])
        a1 = np.concatenate([np.minimum(hi, np.pi), hi[wrap] - 2 * np.pi])
        start = np.searchsorted(self.sorted_az, a0, 'left')
        count = np.searchsorted(self.sorted_az, a1, 'right') - start
        prim = np.repeat(prim, count)
        offset = np.repeat(start - (np.cumsum(count) - count), count)
        ray = self.order[np.arange(len(prim)) + offset]
        s = self.slope[ray]
        keep = (s >= slope_lo[prim]) & (s <= slope_hi[prim])
        return prim[keep], ray[keep]


def _slope_bounds(z0, z1, oz, dmin, dmax):
    """Conservative elevation-slope range of a vertical extent z0..z1 seen from height oz
    at horizontal distances dmin..dmax."""
    top, bottom = z1 - oz, z0 - oz
    with np.errstate(divide='ignore', invalid='ignore'):
        hi = np.where(top > 0, np.where(dmin > _EPS, top / dmin, np.inf), top / dmax)
        lo = np.where(bottom < 0, np.where(dmin > _EPS, bottom / dmin, -np.inf), bottom / dmax)
    return lo, hi


def _chunks(prim, ray):
    for i in range(0, len(prim), _CHUNK):
        yield prim[i:i + _CHUNK], ray[i:i + _CHUNK]


def _box_hits(boxes, origin, d, rays, max_range):
    """Slab-method hits against oriented boxes, yielded per chunk as (ray, t, class, refl, cos)."""
    if len(boxes) == 0:
        return
    c, s = np.cos(boxes.yaw), np.sin(boxes.yaw)
    rel = origin - boxes.center
    o_box = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1], rel[:, 2]], 1)
    half = boxes.size / 2
    gap = np.maximum(np.abs(o_box[:, :2]) - half[:, :2], 0.0)
    dmin = np.hypot(gap[:, 0], gap[:, 1])
    radius = np.hypot(half[:, 0], half[:, 1])
    dist = np.hypot(rel[:, 0], rel[:, 1])
    # azimuth extent from the four footprint corners, relative to the centre's direction
    centre_az = np.arctan2(-rel[:, 1], -rel[:, 0])
    sx, sy = np.array([1, 1, -1, -1]), np.array([1, -1, 1, -1])
    cx = -rel[:, :1] + c[:, None] * sx * half[:, :1] - s[:, None] * sy * half[:, 1:2]
    cy = -rel[:, 1:2] + s[:, None] * sx * half[:, :1] + c[:, None] * sy * half[:, 1:2]
    diff = np.mod(np.arctan2(cy, cx) - centre_az[:, None] + np.pi, 2 * np.pi) - np.pi
    az_lo = centre_az + diff.min(1) - _EPS
    half_width = np.where(dmin > _EPS, (diff.max(1) - diff.min(1)) / 2 + _EPS, np.pi)
    slope_lo, slope_hi = _slope_bounds(-half[:, 2] - o_box[:, 2], half[:, 2] - o_box[:, 2], 0.0,
                                       dmin, dist + radius)
    near = np.flatnonzero(dmin < max_range)
    prim, ray = rays.pairs(az_lo[near], half_width[near], slope_lo[near], slope_hi[near])
    for p, r in _chunks(near[prim], ray):
        cp, sp, dr = c[p], s[p], d[r]
        db = np.stack([cp * dr[:, 0] + sp * dr[:, 1], -sp * dr[:, 0] + cp * dr[:, 1], dr[:, 2]], 1)
        db = np.where(np.abs(db) < 1e-12, 1e-12, db)
        t1 = (-half[p] - o_box[p]) / db
        t2 = (half[p] - o_box[p]) / db
        t_in = np.minimum(t1, t2)
        axis = np.argmax(t_in, 1)
        near_t = np.take_along_axis(t_in, axis[:, None], 1)[:, 0]
        far_t = np.maximum(t1, t2).min(1)
        hit = (near_t <= far_t) & (near_t > 0) & (near_t <= max_range)
        cos = np.abs(np.take_along_axis(db, axis[:, None], 1)[:, 0])
        p = p[hit]
        yield r[hit], near_t[hit], boxes.cls[p], boxes.refl[p], cos[hit]


def _cylinder_hits(cyl, origin, d, rays, max_range):
    """Side and cap hits against vertical cylinders, yielded like _box_hits."""
    if len(cyl) == 0:
        return
    rel = origin[:2] - cyl.center
    dist = np.hypot(rel[:, 0], rel[:, 1])
    outside = dist > cyl.radius + _EPS
    dmin = np.maximum(dist - cyl.radius, 0.0)
    half_width = np.where(outside, np.arcsin(np.minimum(cyl.radius / np.maximum(dist, _EPS), 1.0)) + _EPS,
                          np.pi)
    az_lo = np.arctan2(-rel[:, 1], -rel[:, 0]) - half_width
    slope_lo, slope_hi = _slope_bounds(cyl.z0, cyl.z1, origin[2], dmin, dist + cyl.radius)
    c_sq = (rel ** 2).sum(1) - cyl.radius ** 2
    near = np.flatnonzero(dmin < max_range)
    prim, ray = rays.pairs(az_lo[near], half_width[near], slope_lo[near], slope_hi[near])
    for p, r in _chunks(near[prim], ray):
        dr, rp, z0, z1 = d[r], rel[p], cyl.z0[p], cyl.z1[p]
        a = dr[:, 0] ** 2 + dr[:, 1] ** 2
        b = 2 * (rp[:, 0] * dr[:, 0] + rp[:, 1] * dr[:, 1])
        disc = b * b - 4 * a * c_sq[p]
        with np.errstate(divide='ignore', invalid='ignore'):
            t_side = (-b - np.sqrt(disc)) / (2 * a)
            z = origin[2] + t_side * dr[:, 2]
            side = (disc >= 0) & (a > 0) & (c_sq[p] > 0) & (t_side > 0) & (z >= z0) & (z <= z1)
            t_side = np.where(side, t_side, np.inf)
            cap_z = np.where(origin[2] > z1, z1, z0)
            t_cap = (cap_z - origin[2]) / dr[:, 2]
            q = rp + t_cap[:, None] * dr[:, :2]
            cap = (t_cap > 0) & ((origin[2] > z1) | (origin[2] < z0)) & ((q ** 2).sum(1) <= cyl.radius[p] ** 2)
        t_cap = np.where(cap, t_cap, np.inf)
        t = np.minimum(t_side, t_cap)
        hit = np.isfinite(t) & (t <= max_range)
        t, p, r, t_side, dr, rp = t[hit], p[hit], r[hit], t_side[hit], dr[hit], rp[hit]
        q = rp + t[:, None] * dr[:, :2]
        cos_side = np.abs((q * dr[:, :2]).sum(1)) / cyl.radius[p]
        cos = np.where(t == t_side, cos_side, np.abs(dr[:, 2]))
        yield r, t, cyl.cls[p], cyl.refl[p], cos


def scan(scene: Scene, lidar: LidarModel = HDL64, sensor_position=(0.0, 0.0, 0.0),
         rng: Optional[np.random.Generator] = None):
    """One full sweep. The sensor sits at sensor_position + (0, 0, mount_height) in the
    world; outputs are in the sensor frame (axes parallel to the world's). With rng=None
    the sensor is ideal: no range or intensity noise and no dropout.

    Points are ordered by azimuth column, then by beam (like a spinning sensor's firings).
    """
    origin = np.asarray(sensor_position, dtype=np.float64) + (0.0, 0.0, lidar.mount_height)
    dirs = lidar.directions()
    shape = dirs.shape[:2]
    ranges, cls, refl, cos = (a.reshape(shape) for a in cast_rays(scene, origin, dirs.reshape(-1, 3),
                                                                   lidar.max_range))
    strength = refl * cos * np.exp(-np.where(np.isfinite(ranges), ranges, 0.0) / lidar.falloff_range)
    r, intensity, lost = ranges, strength, np.zeros(shape, bool)
    if rng is not None:
        r = ranges + rng.normal(0.0, lidar.range_noise, shape)
        intensity = strength + rng.normal(0.0, lidar.intensity_noise, shape)
        lost = rng.random(shape) < lidar.dropout
    valid = (np.isfinite(r) & (r >= lidar.min_range) & (r <= lidar.max_range)
             & (strength >= lidar.min_return) & ~lost)
    range_image = np.where(valid, r, 0.0).astype(np.float32)
    intensity_image = np.where(valid, np.clip(intensity, 0.0, 1.0), 0.0).astype(np.float32)
    label_image = np.where(valid, cls, MISS).astype(np.uint8)

    col, row = np.nonzero(valid.T)
    xyz = dirs[row, col] * r[row, col, None]
    points = np.concatenate([xyz, intensity_image[row, col, None]], 1).astype(np.float32)
    return {
        'points': points,
        'labels': label_image[row, col],
        'ring': row.astype(np.uint8),
        'range_image': range_image,
        'intensity_image': intensity_image,
        'label_image': label_image,
        'inclinations': lidar.inclinations,
        'azimuths': lidar.azimuths,
    }
