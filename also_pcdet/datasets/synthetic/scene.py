"""Procedural street scenes built from analytic primitives.

World frame: ground plane at z = 0, the main road runs along x, and the sensor's
ground footprint is the origin. Primitives are oriented boxes (rotated about z)
and vertical capped cylinders, each with a semantic class and a reflectivity.
"""
from dataclasses import dataclass

import numpy as np

CLASS_NAMES = ('ground', 'building', 'vehicle', 'pole', 'person')
GROUND, BUILDING, VEHICLE, POLE, PERSON = range(len(CLASS_NAMES))

HALF_X, HALF_Y = 100.0, 60.0  # scene half-extent around the sensor (m)
LANE_WIDTH = 3.5
PARKING_WIDTH = 2.3
CURB_HEIGHT = 0.15

ASPHALT, PAINT, EARTH, CONCRETE = 0.22, 0.75, 0.35, 0.4
METAL, BARK, FOLIAGE, SKIN, GLASS = 0.55, 0.3, 0.25, 0.45, 0.12


@dataclass(frozen=True)
class Boxes:
    """Boxes rotated by yaw about z; size is (length, width, height) along the box axes."""
    center: np.ndarray  # (B, 3)
    size: np.ndarray    # (B, 3)
    yaw: np.ndarray     # (B,)
    cls: np.ndarray     # (B,) uint8
    refl: np.ndarray    # (B,)

    @classmethod
    def from_rows(cls, rows):
        """Rows of (cx, cy, cz, length, width, height, yaw, class_id, reflectivity)."""
        a = np.asarray(rows, dtype=np.float64).reshape(-1, 9)
        return cls(a[:, 0:3].copy(), a[:, 3:6].copy(), a[:, 6].copy(), a[:, 7].astype(np.uint8), a[:, 8].copy())

    def __len__(self):
        return len(self.yaw)


@dataclass(frozen=True)
class Cylinders:
    """Vertical cylinders with flat caps: axis through center (x, y), from z0 to z1."""
    center: np.ndarray  # (C, 2)
    z0: np.ndarray
    z1: np.ndarray
    radius: np.ndarray
    cls: np.ndarray     # (C,) uint8
    refl: np.ndarray

    @classmethod
    def from_rows(cls, rows):
        """Rows of (cx, cy, z0, z1, radius, class_id, reflectivity)."""
        a = np.asarray(rows, dtype=np.float64).reshape(-1, 7)
        return cls(a[:, 0:2].copy(), a[:, 2].copy(), a[:, 3].copy(), a[:, 4].copy(),
                   a[:, 5].astype(np.uint8), a[:, 6].copy())

    def __len__(self):
        return len(self.radius)


@dataclass(frozen=True)
class Ground:
    """Infinite ground plane with asphalt roads, painted lane lines and earth elsewhere."""
    z: float = 0.0
    road_y: tuple = (-np.inf, np.inf)  # main road edges in y (road runs along x)
    cross_x: tuple = (np.nan, np.nan)  # cross street edges in x (runs along y); nan = none
    line_y: tuple = ()                 # y of painted lines along the main road
    line_dashed: tuple = ()

    def reflectivity(self, x, y):
        """Material reflectivity of the ground at (x, y)."""
        road = (y > self.road_y[0]) & (y < self.road_y[1])
        refl = np.where(road | ((x > self.cross_x[0]) & (x < self.cross_x[1])), ASPHALT, EARTH)
        for ly, dashed in zip(self.line_y, self.line_dashed):
            paint = road & (np.abs(y - ly) < 0.08)
            if dashed:
                paint &= np.mod(x, 9.0) < 3.0
            refl = np.where(paint, PAINT, refl)
        return refl


@dataclass(frozen=True)
class SceneObject:
    """A labelled object: its tight box (world frame, centre, size = length/width/height along the box axes,
    yaw about z), its KITTI type ('Car', 'Van', 'Truck', 'Pedestrian') and the primitives it is made of
    (indices into Scene.boxes and Scene.cylinders)."""
    kind: str
    center: tuple
    size: tuple
    yaw: float
    boxes: tuple = ()
    cylinders: tuple = ()


@dataclass(frozen=True)
class Scene:
    ground: Ground
    boxes: Boxes
    cylinders: Cylinders
    objects: tuple = ()  # SceneObject per vehicle and person


class _Collector:
    """Accumulates primitive rows while a scene is generated."""

    def __init__(self):
        self.boxes, self.cylinders, self.objects = [], [], []

    def box(self, x, y, z0, length, width, height, yaw, cls, refl):
        self.boxes.append((x, y, z0 + height / 2, length, width, height, yaw, cls, refl))

    def cylinder(self, x, y, z0, height, radius, cls, refl):
        self.cylinders.append((x, y, z0, z0 + height, radius, cls, refl))

    def labelled(self, kind, x, y, z0, length, width, height, yaw, first_box, first_cylinder):
        """Record the object made of the primitives added since (first_box, first_cylinder)."""
        self.objects.append(SceneObject(kind, (x, y, z0 + height / 2), (length, width, height), float(yaw),
                                        tuple(range(first_box, len(self.boxes))),
                                        tuple(range(first_cylinder, len(self.cylinders)))))

    def build(self, ground):
        return Scene(ground, Boxes.from_rows(self.boxes), Cylinders.from_rows(self.cylinders), tuple(self.objects))


def make_scene(rng: np.random.Generator) -> Scene:
    """A random street around the origin: road along x, curbs and sidewalks, buildings
    with gaps, parked and moving vehicles, poles, trees and people."""
    n_lanes = int(rng.integers(2, 5))
    ego_lane = int(rng.integers(n_lanes))
    parking = rng.random(2) < 0.7  # (right = -y side, left = +y side)
    lanes_y0 = -(ego_lane + 0.5) * LANE_WIDTH + rng.uniform(-0.4, 0.4)
    lanes_y1 = lanes_y0 + n_lanes * LANE_WIDTH
    road = (lanes_y0 - PARKING_WIDTH * parking[0], lanes_y1 + PARKING_WIDTH * parking[1])
    cross = (np.nan, np.nan)
    if rng.random() < 0.5:
        xc, wc = rng.choice([-1.0, 1.0]) * rng.uniform(15.0, 60.0), rng.uniform(9.0, 14.0)
        cross = (xc - wc / 2, xc + wc / 2)
    lines = lanes_y0 + LANE_WIDTH * np.arange(n_lanes + 1)
    ground = Ground(0.0, road, cross, tuple(lines), tuple([False] + [True] * (n_lanes - 1) + [False]))

    col = _Collector()
    segments = _street_segments(cross)
    for side, curb_y, park in ((-1, road[0], parking[0]), (1, road[1], parking[1])):
        front_y = curb_y + side * rng.uniform(2.5, 5.0)
        for x0, x1 in segments:
            col.box((x0 + x1) / 2, (curb_y + front_y) / 2, 0.0, x1 - x0, abs(front_y - curb_y),
                    CURB_HEIGHT, 0.0, GROUND, CONCRETE)
            _buildings(rng, col, side, front_y, x0, x1, back=False)
            _buildings(rng, col, side, front_y + side * rng.uniform(24.0, 32.0), x0, x1, back=True)
            _furniture(rng, col, side, curb_y, front_y, x0, x1)
            if park:
                _parked(rng, col, side, curb_y, x0, x1)
    _traffic(rng, col, lanes_y0, n_lanes, ego_lane, cross)
    _pedestrians_on_road(rng, col, road, cross)
    return col.build(ground)


def _street_segments(cross):
    """Stretches of the main street's sides not cut by the cross street."""
    if np.isnan(cross[0]):
        return [(-HALF_X, HALF_X)]
    return [(-HALF_X, cross[0]), (cross[1], HALF_X)]


def _buildings(rng, col, side, line_y, x0, x1, back):
    """A row of buildings (and low walls in some gaps) whose facades sit behind line_y."""
    x = x0 + rng.uniform(0.0, 3.0)
    while x < x1 - 3.0:
        length = rng.uniform(15.0, 40.0) if back else rng.uniform(8.0, 35.0)
        end = min(x + length, x1)
        depth = rng.uniform(10.0, 20.0) if back else rng.uniform(8.0, 20.0)
        height = rng.uniform(6.0, 30.0) if back else rng.uniform(4.0, 22.0)
        setback = rng.uniform(0.5, 2.5)
        col.box((x + end) / 2, line_y + side * (setback + depth / 2), 0.0, end - x, depth, height,
                rng.normal(0.0, 0.02), BUILDING, rng.uniform(0.25, 0.6))
        gap = rng.uniform(3.0, 15.0) if rng.random() < 0.4 else rng.uniform(0.0, 0.5)
        if gap > 3.0 and not back and rng.random() < 0.4:
            col.box(end + gap / 2, line_y + side * rng.uniform(0.3, 2.0), 0.0, gap, 0.3,
                    rng.uniform(1.0, 2.5), 0.0, BUILDING, CONCRETE)
        x = end + gap


def _furniture(rng, col, side, curb_y, front_y, x0, x1):
    """Poles and trees near the curb, people on the sidewalk."""
    x = x0 + rng.uniform(0.0, 15.0)
    while x < x1 - 1.0:
        if rng.random() < 0.6:
            col.cylinder(x, curb_y + side * 0.5, CURB_HEIGHT, rng.uniform(4.0, 8.0),
                         rng.uniform(0.1, 0.2), POLE, METAL)
        else:
            trunk = rng.uniform(2.5, 4.0)
            col.cylinder(x, curb_y + side * 1.0, CURB_HEIGHT, trunk, rng.uniform(0.15, 0.3), POLE, BARK)
            col.cylinder(x, curb_y + side * 1.0, CURB_HEIGHT + trunk - 0.3, rng.uniform(2.0, 4.0),
                         rng.uniform(1.0, 2.2), POLE, FOLIAGE)
        x += rng.uniform(12.0, 30.0)
    lo, hi = sorted((curb_y + side * 0.4, front_y - side * 0.4))
    for _ in range(int(rng.integers(2, 8) * (x1 - x0) / (2 * HALF_X) + 0.5)):
        _person(rng, col, rng.uniform(x0, x1), rng.uniform(lo, hi), CURB_HEIGHT)


def _person(rng, col, x, y, z0):
    first = len(col.cylinders)
    height, radius = rng.uniform(1.5, 1.9), rng.uniform(0.25, 0.35)
    col.cylinder(x, y, z0, height, radius, PERSON, SKIN)
    col.labelled('Pedestrian', x, y, z0, 2 * radius, 2 * radius, height, 0.0, len(col.boxes), first)


def _vehicle(rng, col, x, y, yaw):
    """A car (body + glazed cabin) or, sometimes, a van/truck (one box, a truck when longer than 6.5 m)."""
    first = len(col.boxes)
    if rng.random() < 0.15:
        length, width, height = rng.uniform(5.0, 8.0), rng.uniform(2.0, 2.5), rng.uniform(2.2, 3.3)
        col.box(x, y, 0.0, length, width, height, yaw, VEHICLE, rng.uniform(0.3, 0.8))
        col.labelled('Truck' if length > 6.5 else 'Van', x, y, 0.0, length, width, height, yaw, first,
                     len(col.cylinders))
        return
    length, width, height = rng.uniform(3.9, 4.8), rng.uniform(1.7, 1.95), rng.uniform(1.4, 1.65)
    body = 0.6 * height
    col.box(x, y, 0.0, length, width, body, yaw, VEHICLE, rng.uniform(0.15, 0.9))
    shift = -0.05 * length
    col.box(x + shift * np.cos(yaw), y + shift * np.sin(yaw), body, 0.55 * length, 0.9 * width,
            height - body, yaw, VEHICLE, GLASS)
    col.labelled('Car', x, y, 0.0, length, width, height, yaw, first, len(col.cylinders))  # the cabin is inside


def _parked(rng, col, side, curb_y, x0, x1):
    """Vehicles parked along the curb."""
    x = x0 + rng.uniform(0.0, 5.0)
    while x < x1 - 5.0:
        if rng.random() < 0.75:
            yaw = (0.0 if rng.random() < 0.7 else np.pi) + rng.normal(0.0, 0.03)
            _vehicle(rng, col, x + 2.5, curb_y - side * rng.uniform(1.1, 1.3), yaw)
        x += rng.uniform(5.5, 9.0)


def _traffic(rng, col, lanes_y0, n_lanes, ego_lane, cross):
    """Moving vehicles: keep right (+x on the -y half of the road), clear of the ego car."""
    for lane in range(n_lanes):
        y = lanes_y0 + (lane + 0.5) * LANE_WIDTH
        yaw = 0.0 if lane < n_lanes / 2 else np.pi
        last = -np.inf
        for x in np.sort(rng.uniform(-HALF_X + 5, HALF_X - 5, rng.poisson(3.0))):
            if x - last < 12.0 or (lane == ego_lane and abs(x) < 8.0):
                continue
            _vehicle(rng, col, x, y + rng.normal(0.0, 0.2), yaw + rng.normal(0.0, 0.02))
            last = x
    if not np.isnan(cross[0]):
        xc = (cross[0] + cross[1]) / 2
        for _ in range(rng.poisson(1.5)):
            sign = rng.choice([-1.0, 1.0])
            y = sign * rng.uniform(12.0, HALF_Y - 5)
            _vehicle(rng, col, xc - sign * 1.75, y, sign * np.pi / 2)


def _pedestrians_on_road(rng, col, road, cross):
    """A few people crossing the road away from the ego car."""
    for _ in range(rng.integers(0, 3)):
        x = rng.choice([-1.0, 1.0]) * rng.uniform(6.0, 50.0)
        _person(rng, col, x, rng.uniform(road[0] + 0.5, road[1] - 0.5), 0.0)
    if not np.isnan(cross[0]):
        for _ in range(rng.integers(0, 3)):
            _person(rng, col, rng.uniform(*cross), rng.choice([-1.0, 1.0]) * rng.uniform(10.0, 40.0), 0.0)
