"""ALSO pretext queries: points just behind ("in") or in front of ("out") the lidar hits, per ray."""
import numpy as np

QUERY_IN, QUERY_OUT_NEAR, QUERY_OUT_FAR = 0, 1, 2


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


def decimate(xyz: np.ndarray, cell: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices keeping one random point per `cell`-metre cube: of each cube's points, the one
    that comes first in a seeded random permutation.

    One value sort instead of a stable argsort: each point's cube id and permutation rank are packed
    into one int64 (id high, rank low), so the first entry of each id run after sorting is the winner."""
    n = len(xyz)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = rng.permutation(n)
    keys, count = _cell_keys(xyz, cell)
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
    """Draw `num_queries` labelled queries from hit points `xyz` (N, 3).

    `origin` is where the rays start: one position (3,) for every point, or a table (L, 3) with
    `origin_index` (N,) giving each point's row (-1: origin unknown, the point never seeds a query; see
    ray_origins.py). Each query type draws its own source points. Returns float32/int arrays:
    xyz (Q, 3), occupancy (1 = behind the hit), intensity target, intensity_mask, kind, source (hit index),
    origin_index (Q,) the table row each query's ray starts from (0 with one origin).
    """
    origin = np.asarray(origin, dtype=np.float64)
    candidates = None if origin_index is None else np.flatnonzero(origin_index >= 0)
    n = len(xyz) if candidates is None else len(candidates)
    if n == 0:
        raise ValueError('cannot sample queries from an empty point set' if len(xyz) == 0 else
                         f'none of the {len(xyz)} points has a known ray origin')
    counts = split_count(num_queries)
    kind = np.repeat(np.array([QUERY_IN, QUERY_OUT_NEAR, QUERY_OUT_FAR], dtype=np.uint8), counts)
    source = np.concatenate([rng.choice(n, c, replace=c > n) for c in counts])
    if candidates is None:
        rows = np.zeros(num_queries, dtype=np.int64)
    else:
        source = candidates[source]
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
