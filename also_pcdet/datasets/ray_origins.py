"""Where each point's lidar ray starts, and which points may seed ALSO queries.

A source's `read` returns (points, origin) where `origin` is either
- one position (3,): every point was cast from it and every point may seed queries (KITTI, nuScenes single
  sweeps); the per-sample pipeline then takes its one-origin fast path, or
- a `RayOrigins`: a table of sensor positions (L, 3) and, per point, the row of the table its ray started
  from (`index`, (N,) integer). Index -1 marks a point whose ray origin is unknown (or not trusted): it stays
  network input but never seeds a query, since its "empty" space along the ray cannot be placed. Examples:
  Waymo's five lidars (row = lidar), nuScenes multi-sweep inputs (only the key sweep's points get row 0,
  the merged past sweeps -1).

Origins live in the same frame as the points: augmentation transforms the table exactly like the points.
"""
from typing import NamedTuple

import numpy as np

UNKNOWN_ORIGIN = -1


class RayOrigins(NamedTuple):
    """table: (L, 3) float64 sensor positions; index: (N,) integer row of `table` per point, UNKNOWN_ORIGIN
    for a point that must not seed queries; names: optional label per table row (e.g. 'TOP'), for reports
    and pictures."""
    table: np.ndarray
    index: np.ndarray
    names: tuple = ()


def origin_arrays(origin, num_points: int, where) -> tuple:
    """(table (L, 3) float64, index (N,) or None) of what a source's `read` returned for `num_points` points:
    one position gives a one-row table and index None (every point seeds queries: the fast path). A
    malformed RayOrigins is a bug of its source: ValueError naming `where`."""
    if not isinstance(origin, RayOrigins):
        return np.asarray(origin, dtype=np.float64).reshape(1, 3), None
    table, index = np.asarray(origin.table, dtype=np.float64), np.asarray(origin.index)
    if table.ndim != 2 or table.shape[1] != 3 or len(table) == 0:
        raise ValueError(f'{where}: origin table must be (L, 3), got {table.shape}')
    if index.shape != (num_points,) or index.dtype.kind not in 'iu':
        raise ValueError(f'{where}: origin index must be an integer ({num_points},) array, got '
                         f'{index.dtype} {index.shape}')
    if num_points and (index.min() < UNKNOWN_ORIGIN or index.max() >= len(table)):
        raise ValueError(f'{where}: origin index outside [{UNKNOWN_ORIGIN}, {len(table) - 1}]')
    return table, index
