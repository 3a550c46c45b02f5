"""nuScenes LIDAR_TOP sweeps (`samples/` and `sweeps/` `.pcd.bin`), read without the nuscenes-devkit."""
import json
import os
from collections import defaultdict

import numpy as np

from .errors import SweepError, refuse_special
from .info_pickle import load_info_pickle
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


EGO_HALF_EXTENT = 1.0  # OpenPCDet drops merged past-sweep points with |x| < 1 m and |y| < 1 m (the ego car)


def read_nuscenes_past_sweep(path, transform, time_lag: float) -> np.ndarray:
    """A past sweep merged into a key frame as OpenPCDet's nuScenes loader does: points of the ego car
    (|x|, |y| < EGO_HALF_EXTENT in the sweep's own frame) dropped, x, y, z moved by the 4x4 `transform` (sweep
    lidar -> key-frame lidar; None: already there) and the timestamp column set to `time_lag` (seconds)."""
    points = read_nuscenes_lidar(path)
    points = points[~((np.abs(points[:, 0]) < EGO_HALF_EXTENT) & (np.abs(points[:, 1]) < EGO_HALF_EXTENT))]
    if transform is not None:
        transform = np.asarray(transform, dtype=np.float64)
        if transform.shape != (4, 4):
            raise SweepError(path, f'its transform_matrix is {transform.shape}, not 4x4')
        points[:, :3] = points[:, :3].astype(np.float64) @ transform[:3, :3].T + transform[:3, 3]
    points[:, 4] = time_lag
    return points


def load_nuscenes_infos(path) -> list:
    """From an OpenPCDet nuScenes info pkl (`nuscenes_infos_<N>sweeps_<split>.pkl`, a list of per-key-frame dicts),
    what merging needs: [{'lidar_path', 'sweeps': [{'lidar_path', 'transform_matrix', 'time_lag'}, ...]}]."""
    infos = load_info_pickle(path, 'the info pkl (OpenPCDet writes it with create_nuscenes_infos)')
    try:
        return [{'lidar_path': str(info['lidar_path']),
                 'sweeps': [{'lidar_path': str(s['lidar_path']), 'time_lag': float(s['time_lag']),
                             'transform_matrix': None if s['transform_matrix'] is None
                             else np.asarray(s['transform_matrix'], dtype=np.float64)}
                            for s in info.get('sweeps', [])]}
                for info in infos]
    except (KeyError, TypeError, ValueError) as err:
        raise SweepError(path, f'not an OpenPCDet nuScenes info list (each entry needs lidar_path and sweeps '
                               f'with lidar_path, transform_matrix, time_lag): {type(err).__name__}: {err}') from err


SCENE_MARGIN_US = 1_000_000  # a sweep lies within its scene's key-frame span, give or take this (20 Hz sweeps)
TABLE_KEYS = {'log': ('token', 'logfile'), 'scene': ('token', 'name', 'log_token'),
              'sample': ('timestamp', 'scene_token')}


def read_table(tables, name: str) -> list:
    """`<tables>/<name>.json`, a nuScenes table (a JSON list of records); SweepError naming the file if it is
    missing or not such a list."""
    path = tables / f'{name}.json'
    refuse_special(path)
    try:
        rows = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise SweepError(path, 'nuScenes table not found (DATA_SPLIT train / val map sweeps to the official scenes '
                               'with log.json, scene.json and sample.json; set VERSION, or use a list file)') from err
    except (OSError, ValueError) as err:
        raise SweepError(path, f'cannot read the nuScenes table: {err}') from err
    keys = TABLE_KEYS[name]
    if not isinstance(rows, list) or not all(isinstance(row, dict) and all(k in row for k in keys) for row in rows):
        raise SweepError(path, f'not a nuScenes {name} table: a list of records with {", ".join(keys)}')
    return rows


def lidar_scenes(tables, names) -> list:
    """The scene name of each LIDAR_TOP file name `<logfile>__LIDAR_TOP__<timestamp us>.pcd.bin`, from the plain
    JSON tables of a nuScenes version folder (no devkit): the scene of the file's log whose key frames
    (sample.json timestamps) span its timestamp, within SCENE_MARGIN_US; None where no scene does."""
    logfile = {row['token']: row['logfile'] for row in read_table(tables, 'log')}
    span = {}
    for row in read_table(tables, 'sample'):
        low, high = span.get(row['scene_token'], (row['timestamp'], row['timestamp']))
        span[row['scene_token']] = (min(low, row['timestamp']), max(high, row['timestamp']))
    scenes = defaultdict(list)  # logfile -> [(first key frame, last key frame, scene name)]
    for row in read_table(tables, 'scene'):
        if row['token'] in span and row['log_token'] in logfile:
            scenes[logfile[row['log_token']]].append((*span[row['token']], row['name']))
    found = []
    for name in names:
        log, _, stamp = str(name).partition('__LIDAR_TOP__')
        stamp = stamp.split('.', 1)[0]
        if not stamp.isdigit():
            found.append(None)
            continue
        time = int(stamp)
        gaps = [(max(first - time, time - last, 0), scene) for first, last, scene in scenes.get(log, ())]
        gap, scene = min(gaps, default=(None, None))
        found.append(scene if gap is not None and gap <= SCENE_MARGIN_US else None)
    return found
