"""Rigid train-time augmentation applied alike to points, queries and the sensor origin."""
import numpy as np


class RigidAugmentation:
    """A rotation about z followed by an optional x -> -x flip: a 3x3 matrix on xyz."""

    def __init__(self, angle: float = 0.0, flip_x: bool = False):
        self.angle, self.flip_x = float(angle), bool(flip_x)
        c, s = np.cos(self.angle), np.sin(self.angle)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        flip = np.diag([-1.0 if self.flip_x else 1.0, 1.0, 1.0])
        self.matrix = flip @ rot

    @classmethod
    def draw(cls, cfg, rng: np.random.Generator) -> 'RigidAugmentation':
        """Random transform from an AUGMENTATION config (ROT_RANGE in degrees, FLIP_X_PROB)."""
        low, high = np.deg2rad(cfg.ROT_RANGE)
        return cls(angle=rng.uniform(low, high), flip_x=rng.random() < cfg.FLIP_X_PROB)

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Transform the first three columns of (N, >=3) points or a (3,) position; other columns pass."""
        out = np.array(array, copy=True)
        # Column by column rather than `xyz @ matrix.T`: once torch is imported, OpenBLAS's threaded dgemm
        # takes ~40 ms on the (N, 3) x (3, 3) product of a 120k-point sweep, this ~1 ms.
        x, y, z = (array[..., k].astype(np.float64) for k in range(3))
        for i, (mx, my, mz) in enumerate(self.matrix):
            out[..., i] = x * mx + y * my + z * mz
        return out
