"""PointPillarScatter: pillar feature vectors scattered onto the dense BEV grid."""
from torch import nn


class PointPillarScatter(nn.Module):
    """Reads `pillar_features` (V, C) and `voxel_coords` (V, 4) as (b, z, y, x); writes `spatial_features`
    (B, NUM_BEV_FEATURES, ny, nx), zero where there is no pillar. No parameters, like OpenPCDet's."""

    def __init__(self, model_cfg, grid_size, **kwargs):
        super().__init__()
        self.model_cfg = model_cfg
        self.num_bev_features = model_cfg.NUM_BEV_FEATURES
        self.nx, self.ny, self.nz = (int(g) for g in grid_size)
        if self.nz != 1:
            raise ValueError(f'PointPillarScatter needs one z cell (pillars), the grid has {self.nz}: '
                             f'make VOXEL_SIZE z equal to the POINT_CLOUD_RANGE height')

    def forward(self, batch_dict, **kwargs):
        features, coords = batch_dict['pillar_features'], batch_dict['voxel_coords'].long()
        if features.shape[1] != self.num_bev_features:
            raise ValueError(f'PointPillarScatter: {features.shape[1]} pillar features != NUM_BEV_FEATURES '
                             f'{self.num_bev_features}')
        batch_size = int(batch_dict['batch_size'])
        cell = (coords[:, 0] * self.ny + coords[:, 2]) * self.nx + coords[:, 3]
        flat = features.new_zeros((batch_size * self.ny * self.nx, self.num_bev_features))
        flat = flat.index_copy(0, cell, features)
        batch_dict['spatial_features'] = flat.view(batch_size, self.ny, self.nx, -1).permute(0, 3, 1, 2).contiguous()
        return batch_dict
