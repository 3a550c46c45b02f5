"""ALSO pretext queries: points just behind ("in") or in front of ("out") the lidar hits, per ray."""
import numpy as np

from .sweep_checks import inside_range

QUERY_IN, QUERY_OUT_NEAR, QUERY_OUT_FAR = 0, 1, 2
MAX_ROUNDS = 8  # draw rounds of `sample_queries_in_range` before its fallback
MAX_OVERDRAW = 64  # at most this many draws per missing query of a kind in one round
# expected share of draws in range before any is drawn: after `rays_reaching_range` ~97 % on KITTI sweeps
FIRST_RATE = 0.9


class QueryShortage(ValueError):
    """No query of some kind falls inside the range: the sweep cannot give its share of that kind."""


def _cell_keys(xyz: np.ndarray, cell: float) -> tuple:
    """Integer id of each point's `cell`-metre cube (ids are dense in the bounding box), and the id count."""
    keys = np.zeros(len(xyz), dtype=np.int64)
    count = 1
    for axis in range(3):  # column by column: contiguous 1-D passes, no (N, 3) strided reductions
        index = np.floor(xyz[:, axis] / cell).astype(np.int64)
        low = index.min()
        span = int(index.max() - low) + 1
        keys *= span
        keys += index - low
        count *= span
    return keys, count


def decimate(xyz: np.ndarray, cell: float, rng: np.random.Generator, group: np.ndarray = None) -> np.ndarray:
    """Sorted indices keeping one random point per `cell`-metre cube: of each cube's points, the one
    that comes first in a seeded random permutation. With a boolean `group` (N,), points of the two groups
    never share a cube (a cube split by the range's boundary keeps one point on each side).

    One value sort instead of a stable argsort: each point's cube id and permutation rank are packed
    into one int64 (id high, rank low), so the first entry of each id run after sorting is the winner."""
    n = len(xyz)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = rng.permutation(n)
    keys, count = _cell_keys(xyz, cell)
    if group is not None:
        keys = 2 * keys + group
        count *= 2
    rank_bits = max((n - 1).bit_length(), 1)
    if (count - 1).bit_length() + rank_bits > 63:
        raise ValueError(f'{n} points spanning {count} cells of {cell} m: too many to pack into int64 '
                         f'(crop the sweep first)')
    packed = np.sort((keys[order] << rank_bits) | np.arange(n))
    cube = packed >> rank_bits
    first = np.empty(n, dtype=bool)
    first[0] = True
    np.not_equal(cube[1:], cube[:-1], out=first[1:])
    return np.sort(order[packed[first] & ((1 << rank_bits) - 1)])


def split_count(total: int) -> tuple:
    """Split `total` queries into (in, out-near, out-far); the remainder goes to "in" (4096 -> 1366/1365/1365)."""
    base = total // 3
    return (total - 2 * base, base, base)


def sample_queries(xyz: np.ndarray, intensity: np.ndarray, origin, num_queries: int, band: float,
                   rng: np.random.Generator, origin_index: np.ndarray = None) -> dict:
    """Draw `num_queries` labelled queries from hit points `xyz` (N, 3), wherever they fall.

    `origin` is where the rays start: one position (3,) for every point, or a table (L, 3) with
    `origin_index` (N,) giving each point's row (-1: origin unknown, the point never seeds a query; see
    ray_origins.py). Each query type draws its own source points. Returns float32/int arrays:
    xyz (Q, 3), occupancy (1 = behind the hit), intensity target, intensity_mask, kind, source (hit index),
    origin_index (Q,) the table row each query's ray starts from (0 with one origin).
    """
    return _draw(xyz, intensity, origin, split_count(num_queries), band, rng, origin_index)


def sample_queries_in_range(xyz: np.ndarray, intensity: np.ndarray, origin, num_queries: int, band: float,
                            rng: np.random.Generator, point_cloud_range, origin_index: np.ndarray = None,
                            seeds: np.ndarray = None) -> dict:
    """`sample_queries` keeping only the queries inside `point_cloud_range` ([x0, y0, z0, x1, y1, z1), as the
    voxelizer); `seeds` (optional, indices) are the hits that may seed queries, each with a known origin (default:
    all hits with one). Each kind is drawn from those hits in rounds, its in-range queries kept, until it has its
    `split_count` share, so the kinds keep their proportions among the kept queries (1366/1365/1365).
    A kind still short after MAX_ROUNDS rounds repeats some of its kept queries (random, with replacement);
    a kind with no in-range query at all raises QueryShortage."""
    need = np.array(split_count(num_queries))
    have, drawn, accepted = np.zeros(3, np.int64), np.zeros(3), np.zeros(3)
    kept = [[] for _ in need]
    for _ in range(MAX_ROUNDS):
        missing = need - have
        if not missing.any():
            break
        rate = np.where(drawn > 0, accepted / np.maximum(drawn, 1), FIRST_RATE)
        counts = np.minimum(np.ceil(1.25 * missing / np.maximum(rate, 1 / MAX_OVERDRAW)) + 8, MAX_OVERDRAW * missing)
        counts = np.where(missing > 0, counts, 0).astype(np.int64)
        batch = _draw(xyz, intensity, origin, counts, band, rng, origin_index, seeds)
        inside = inside_range(batch['xyz'], point_cloud_range)
        start = 0
        for kind, count in enumerate(counts):
            found = start + np.flatnonzero(inside[start:start + count])
            drawn[kind] += count
            accepted[kind] += len(found)
            taken = found[:missing[kind]]
            kept[kind].append({key: value[taken] for key, value in batch.items()})
            have[kind] += len(taken)
            start += count
    parts = []
    for kind, pieces in enumerate(kept):
        part = {key: np.concatenate([piece[key] for piece in pieces]) for key in pieces[0]}
        if have[kind] == 0:
            raise QueryShortage(f'no query of kind {("in", "out-near", "out-far")[kind]} falls inside '
                                f'POINT_CLOUD_RANGE in {int(drawn[kind])} draws from {len(xyz)} hits')
        if have[kind] < need[kind]:  # fallback: repeat kept queries of this kind
            rows = np.concatenate([np.arange(have[kind]), rng.choice(have[kind], need[kind] - have[kind])])
            part = {key: value[rows] for key, value in part.items()}
        parts.append(part)
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def rays_reaching_range(xyz: np.ndarray, origins: np.ndarray, band: float, point_cloud_range,
                        among: np.ndarray = None) -> np.ndarray:
    """Mask of the hits `xyz` (N, 3) (only those of the mask `among`, if given) whose ray segment, from its
    origin (`origins`: (3,) or (N, 3)) to `band` behind the hit, crosses the inside of the range box: every query of a hit lies on that segment, so the
    others can have no query in range. A cheap test first drops the segments that stay on the outer side of
    one face (origin and hit +- band both beyond it: e.g. KITTI's rear half); the rest get an exact slab test
    (overlap of positive length for t in [0, 1])."""
    origins = np.asarray(origins, dtype=np.float64)
    maybe = np.ones(len(xyz), dtype=bool) if among is None else among.copy()
    for axis in range(3):
        start, column = origins[..., axis], xyz[:, axis]
        low, high = point_cloud_range[axis], point_cloud_range[axis + 3]
        if origins.ndim == 1:  # one origin: only a face it is outside of (or on) can cut rays off
            if start <= low:
                maybe &= column > low - band
            elif start >= high:
                maybe &= column < high + band
        elif start.min() <= low or start.max() >= high:  # per-hit origins, some outside this slab
            maybe &= ~(((start <= low) & (column <= low - band)) | ((start >= high) & (column >= high + band)))
    rows = np.flatnonzero(maybe)
    starts = np.broadcast_to(origins, xyz.shape)[rows]
    offset = xyz[rows].astype(np.float64) - starts
    length = np.sqrt(np.einsum('ij,ij->i', offset, offset))
    segment = offset * (1.0 + band / np.maximum(length, 1e-9))[:, None]
    enter_all, leave_all = np.zeros(len(rows)), np.ones(len(rows))
    with np.errstate(divide='ignore', invalid='ignore'):
        for axis in range(3):
            start, step = starts[:, axis], segment[:, axis]
            enter = (point_cloud_range[axis] - start) / step
            leave = (point_cloud_range[axis + 3] - start) / step
            np.maximum(enter_all, np.minimum(enter, leave), out=enter_all)
            np.minimum(leave_all, np.maximum(enter, leave), out=leave_all)
    maybe[rows] = leave_all > enter_all
    return maybe


def _draw(xyz, intensity, origin, counts, band, rng, origin_index, seeds=None) -> dict:
    """counts[k] queries of each kind k (in, out-near, out-far), in that order; see `sample_queries`."""
    num_queries = int(np.sum(counts))
    origin = np.asarray(origin, dtype=np.float64)
    candidates = seeds if seeds is not None else None if origin_index is None else np.flatnonzero(origin_index >= 0)
    n = len(xyz) if candidates is None else len(candidates)
    if n == 0:
        raise ValueError('cannot sample queries from an empty point set' if len(xyz) == 0 else
                         f'none of the {len(xyz)} points has a known ray origin')
    kind = np.repeat(np.array([QUERY_IN, QUERY_OUT_NEAR, QUERY_OUT_FAR], dtype=np.uint8), counts)
    source = np.concatenate([rng.choice(n, c, replace=c > n) for c in counts])
    if candidates is not None:
        source = candidates[source]
    if origin_index is None:
        rows = np.zeros(num_queries, dtype=np.int64)
    else:
        rows = origin_index[source].astype(np.int64)
        origin = origin.reshape(-1, 3)[rows]
    hits = xyz[source].astype(np.float64)
    offset = hits - origin
    dist = np.linalg.norm(offset, axis=1, keepdims=True)
    ray = offset / np.maximum(dist, 1e-9)
    u = rng.random((num_queries, 1))
    step = np.where(kind[:, None] == QUERY_IN, u * band, -u * band)
    queries = np.where(kind[:, None] == QUERY_OUT_FAR, origin + u * offset, hits + step * ray)
    has_target = kind != QUERY_OUT_FAR
    return {
        'xyz': queries.astype(np.float32),
        'occupancy': (kind == QUERY_IN).astype(np.float32),
        'intensity': np.where(has_target, intensity[source], 0).astype(np.float32),
        'intensity_mask': has_target.astype(np.float32),
        'kind': kind,
        'source': source,
        'origin_index': rows,
    }
