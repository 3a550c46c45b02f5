"""Sensor gap: thin a dense lidar towards a sparser one by dropping whole rings (DATA_CONFIG.BEAM_DROP).

A spinning lidar's ring is a set of returns at (nearly) one elevation angle seen from its ray origin. Rings are
estimated per sweep and per ray origin (each of Waymo's lidars, each nuScenes sweep, ...): the points' elevations
relative to their own origin, sorted, split wherever two neighbours are more than RING_GAP_DEG apart (the
gap has to be smaller than the sensor's beam spacing and larger than the elevation spread within a ring).
Points whose origin is unknown (index -1) are placed relative to the first origin. Rings are counted from the
lowest, and
- KEEP_EVERY: k keeps rings 0, k, 2k, ... (64 -> 32 with k = 2),
- BEAMS: n keeps n rings spread evenly from the lowest to the highest (all of them when there are fewer).
"""
import numpy as np

from ..config import ConfigError

DEFAULT_RING_GAP_DEG = 0.1
MODES = ('KEEP_EVERY', 'BEAMS')


def beam_drop_errors(section, where: str = 'DATA_CONFIG.BEAM_DROP') -> list:
    """Problems of a BEAM_DROP section (types are the schema's): exactly one of KEEP_EVERY / BEAMS, at least 1;
    RING_GAP_DEG above 0."""
    if not section:
        return []
    modes = [mode for mode in MODES if mode in section]
    errors = [] if len(modes) == 1 else [f'{where}: set exactly one of KEEP_EVERY (keep every k-th ring) or BEAMS '
                                         f'(keep that many rings), got {modes or "neither"}']
    errors += [f'{where}.{mode} must be at least 1, got {section[mode]!r}' for mode in modes if section[mode] < 1]
    if not section.get('RING_GAP_DEG', DEFAULT_RING_GAP_DEG) > 0:
        errors.append(f'{where}.RING_GAP_DEG must be above 0, got {section["RING_GAP_DEG"]!r}')
    return errors


def rings_by_elevation(elevation_deg: np.ndarray, gap_deg: float) -> np.ndarray:
    """(N,) ring of each elevation angle, 0 = the lowest: the sorted angles split where neighbours are more than
    `gap_deg` apart."""
    order = np.argsort(elevation_deg, kind='stable')
    rings = np.empty(len(order), np.int64)
    rings[order] = np.concatenate([[0], np.cumsum(np.diff(elevation_deg[order]) > gap_deg)])
    return rings


def kept_rings(count: int, section) -> np.ndarray:
    """The rings (of 0 .. count - 1) that BEAM_DROP `section` keeps."""
    if 'KEEP_EVERY' in section:
        return np.arange(0, count, int(section['KEEP_EVERY']))
    beams = min(int(section['BEAMS']), count)
    return np.unique(np.round(np.linspace(0, count - 1, beams)).astype(np.int64))


def beam_drop_mask(xyz: np.ndarray, table: np.ndarray, origin_index, section) -> np.ndarray:
    """(N,) bool: the points on the rings BEAM_DROP `section` keeps, rings estimated per ray origin (`table`
    (L, 3); `origin_index` (N,), -1 counted with row 0, or None: every point from table[0])."""
    gap = float(section.get('RING_GAP_DEG', DEFAULT_RING_GAP_DEG))
    group = np.zeros(len(xyz), np.int64) if origin_index is None else np.maximum(origin_index, 0)
    keep = np.zeros(len(xyz), bool)
    for origin in np.unique(group):
        mine = np.flatnonzero(group == origin)
        delta = xyz[mine, :3].astype(np.float64) - table[origin]
        rings = rings_by_elevation(np.degrees(np.arctan2(delta[:, 2], np.hypot(delta[:, 0], delta[:, 1]))), gap)
        keep[mine] = np.isin(rings, kept_rings(int(rings.max()) + 1, section))
    return keep


def checked_section(data_cfg, where: str = 'DATA_CONFIG.BEAM_DROP'):
    """DATA_CONFIG's BEAM_DROP section, or None when it is off; a bad one is a ConfigError."""
    section = data_cfg.get('BEAM_DROP')
    errors = beam_drop_errors(section, where)
    if errors:
        raise ConfigError('; '.join(errors))
    return section or None
