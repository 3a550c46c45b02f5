"""DynMeanVFE: voxel features as the mean of the raw points in each voxel, computed from `points` directly."""
import torch
from torch import nn

from .scatter import cell_of_points, group_points, scatter_mean


class DynMeanVFE(nn.Module):
    """Reads `points` (N, 1 + C) with the batch index first; writes `voxel_features` (V, C) and
    `voxel_coords` (V, 4) as (batch, z, y, x), one row per occupied voxel, points outside the grid dropped.
    Same outputs as OpenPCDet's DynMeanVFE (which uses torch_scatter); no parameters."""

    READS_POINTS = True   # the loader must collate `points` (models.batch_inputs)

    def __init__(self, model_cfg, num_point_features, voxel_size, grid_size, point_cloud_range, **kwargs):
        super().__init__()
        self.model_cfg = model_cfg
        self.num_point_features = num_point_features
        self.voxel_size = [float(v) for v in voxel_size]
        self.grid_size = [int(g) for g in grid_size]
        self.point_cloud_range = [float(v) for v in point_cloud_range]

    def get_output_feature_dim(self):
        return self.num_point_features

    @torch.no_grad()
    def forward(self, batch_dict, **kwargs):
        points = batch_dict['points']
        cells, inside = cell_of_points(points[:, 1:4], self.point_cloud_range, self.voxel_size, self.grid_size, 3)
        points, cells = points[inside], cells[inside]
        nx, ny, nz = self.grid_size
        # one integer per (batch, x, y, z) voxel, ordered as OpenPCDet orders its voxels
        keys = ((points[:, 0].long() * nx + cells[:, 0]) * ny + cells[:, 1]) * nz + cells[:, 2]
        unique, group, counts = group_points(keys)
        batch_dict['voxel_features'] = scatter_mean(points[:, 1:].contiguous(), group, counts).contiguous()
        batch_dict['voxel_coords'] = torch.stack(
            [unique // (nx * ny * nz), unique % nz, (unique // nz) % ny, (unique // (ny * nz)) % nx], dim=1).int()
        return batch_dict
