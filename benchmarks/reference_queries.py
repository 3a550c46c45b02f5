"""Plain NumPy reference for ALSO query generation, written for clarity rather than speed.

Same sampling as `also_pcdet.datasets.queries` and the same random draws in the same order, so for one
seed both return the same decimated points and the same queries (the benchmark checks it)."""
import numpy as np


def decimate(xyz: np.ndarray, cell: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of one random point per `cell`-metre cube: shuffle, then keep the first point
    seen in each cube (np.unique over the integer cube coordinates)."""
    order = rng.permutation(len(xyz))
    cubes = np.floor(xyz[order] / cell).astype(np.int64)
    _, first = np.unique(cubes, axis=0, return_index=True)
    return np.sort(order[first])


def sample_queries(xyz: np.ndarray, intensity: np.ndarray, origin, num_queries: int, band: float,
                   rng: np.random.Generator) -> dict:
    """`num_queries` queries, type by type: "in" (behind the hit, label 1), "out-near" (in front of it)
    and "out-far" (anywhere between the sensor and the hit), 1366/1365/1365 for 4096."""
    origin = np.asarray(origin, dtype=np.float64)
    third = num_queries // 3
    counts = [num_queries - 2 * third, third, third]
    sources = [rng.choice(len(xyz), count, replace=count > len(xyz)) for count in counts]
    u = rng.random(num_queries)
    parts = {name: [] for name in ('xyz', 'occupancy', 'intensity', 'intensity_mask', 'kind', 'source')}
    start = 0
    for kind, (count, source) in enumerate(zip(counts, sources)):
        step = u[start:start + count, None]
        start += count
        hits = xyz[source].astype(np.float64)
        ray = (hits - origin) / np.maximum(np.linalg.norm(hits - origin, axis=1, keepdims=True), 1e-9)
        if kind == 0:
            queries = hits + step * band * ray
        elif kind == 1:
            queries = hits - step * band * ray
        else:
            queries = origin + step * (hits - origin)
        has_target = kind != 2
        parts['xyz'].append(queries.astype(np.float32))
        parts['occupancy'].append(np.full(count, kind == 0, dtype=np.float32))
        parts['intensity'].append((intensity[source] if has_target else np.zeros(count)).astype(np.float32))
        parts['intensity_mask'].append(np.full(count, has_target, dtype=np.float32))
        parts['kind'].append(np.full(count, kind, dtype=np.uint8))
        parts['source'].append(source)
    return {name: np.concatenate(arrays) for name, arrays in parts.items()}
