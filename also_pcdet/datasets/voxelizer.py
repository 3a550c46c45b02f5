"""Voxelization with spconv's PointToVoxel: one generator per process, reused across sweeps."""
import os

import numpy as np
import torch

_GENERATORS = {}


class Voxelizer:
    """Picklable voxelization settings; the heavy spconv generator is built lazily once per process."""

    def __init__(self, voxel_size, point_cloud_range, num_point_features: int,
                 max_points_per_voxel: int, max_voxels: int):
        self.key = (tuple(float(v) for v in voxel_size), tuple(float(v) for v in point_cloud_range),
                    int(num_point_features), int(max_points_per_voxel), int(max_voxels))

    def _generator(self):
        key = (os.getpid(),) + self.key
        if key not in _GENERATORS:
            from spconv.pytorch.utils import PointToVoxel
            voxel_size, pc_range, num_features, max_points, max_voxels = self.key
            _GENERATORS[key] = PointToVoxel(vsize_xyz=list(voxel_size), coors_range_xyz=list(pc_range),
                                            num_point_features=num_features, max_num_voxels=max_voxels,
                                            max_num_points_per_voxel=max_points, device=torch.device('cpu'))
        return _GENERATORS[key]

    def __call__(self, points: np.ndarray) -> dict:
        """Voxelize (N, C) float32 points: voxels (V, P, C), voxel_coords (V, 3) as z, y, x, voxel_num_points (V,)."""
        voxels, coords, num_points = self._generator()(torch.from_numpy(np.ascontiguousarray(points)))
        # The generator returns views of buffers it reuses on the next call: copy them out.
        return {'voxels': voxels.numpy().copy(), 'voxel_coords': coords.numpy().copy(),
                'voxel_num_points': num_points.numpy().copy()}
