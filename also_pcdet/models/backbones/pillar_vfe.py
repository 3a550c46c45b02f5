"""Pillar feature nets: PillarVFE (padded voxels) and DynPillarVFE (raw points, no point cap per pillar).

Each point is decorated with its offset from the pillar's point mean (f_cluster) and from the pillar's centre
(f_center), then PFN layers (Linear -> BatchNorm1d -> ReLU, max over the pillar's points) give one feature
vector per pillar. Key for key and shape for shape OpenPCDet's `PillarVFE` / `DynPillarVFE`."""
import torch
import torch.nn.functional as F
from torch import nn

from .scatter import cell_of_points, group_points, scatter_max, scatter_mean


class _PFNBase(nn.Module):
    """Linear (no bias when followed by BatchNorm) -> BatchNorm1d -> ReLU; all but the last layer
    output half their width and append the pillar maximum to every point."""

    def __init__(self, in_channels, out_channels, use_norm=True, last_layer=False):
        super().__init__()
        self.last_vfe = last_layer
        self.use_norm = use_norm
        out_channels = out_channels if last_layer else out_channels // 2
        self.linear = nn.Linear(in_channels, out_channels, bias=not use_norm)
        if use_norm:
            self.norm = nn.BatchNorm1d(out_channels, eps=1e-3, momentum=0.01)


class PFNLayer(_PFNBase):
    """PFN layer on padded pillars (V, P, C): max over the P point slots."""

    def forward(self, inputs):
        x = self.linear(inputs)
        if self.use_norm:
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        x = F.relu(x)
        pillar_max = x.max(dim=1, keepdim=True)[0]
        return pillar_max if self.last_vfe else torch.cat([x, pillar_max.expand_as(x)], dim=2)


class PFNLayerV2(_PFNBase):
    """PFN layer on flat points (N, C) with their pillar index `group` (N,)."""

    def forward(self, inputs, group, num_groups):
        x = self.linear(inputs)
        x = F.relu(self.norm(x) if self.use_norm else x)
        pillar_max = scatter_max(x, group, num_groups)
        return pillar_max if self.last_vfe else torch.cat([x, pillar_max[group]], dim=1)


class _PillarVFEBase(nn.Module):
    def __init__(self, layer, model_cfg, num_point_features, voxel_size, point_cloud_range):
        super().__init__()
        self.model_cfg = model_cfg
        self.use_norm = model_cfg.USE_NORM
        self.with_distance = model_cfg.WITH_DISTANCE
        self.use_absolute_xyz = model_cfg.USE_ABSLOTE_XYZ
        widths = [self.point_width(model_cfg, num_point_features), *model_cfg.NUM_FILTERS]
        if len(widths) < 2:
            raise ValueError('PillarVFE needs at least one NUM_FILTERS entry')
        self.num_filters = widths[1:]
        self.pfn_layers = nn.ModuleList(
            layer(c_in, c_out, self.use_norm, last_layer=i == len(widths) - 2)
            for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:])))
        self.voxel_size = [float(v) for v in voxel_size]
        self.point_cloud_range = [float(v) for v in point_cloud_range]
        # centre of cell 0 along x, y, z
        self.offset = [v / 2 + low for v, low in zip(self.voxel_size, self.point_cloud_range[:3])]

    @staticmethod
    def point_width(model_cfg, num_point_features):
        """Width of a decorated point: raw features + 3 cluster + 3 centre offsets (minus x, y, z without
        USE_ABSLOTE_XYZ) + 1 with WITH_DISTANCE."""
        return num_point_features + (6 if model_cfg.USE_ABSLOTE_XYZ else 3) + (1 if model_cfg.WITH_DISTANCE else 0)

    def get_output_feature_dim(self):
        return self.num_filters[-1]

    def _decorate(self, raw, xyz, cluster_mean, cell_xyz):
        """Point features: raw (x, y, z kept with USE_ABSLOTE_XYZ), offset to the pillar mean, offset to the
        cell centre (`cell_xyz` holds the x, y, z cells; z is the cell centre, 0 for one z cell), distance."""
        centre = cell_xyz.to(xyz.dtype) * xyz.new_tensor(self.voxel_size) + xyz.new_tensor(self.offset)
        features = [raw if self.use_absolute_xyz else raw[..., 3:], xyz - cluster_mean, xyz - centre]
        if self.with_distance:
            features.append(torch.linalg.vector_norm(xyz, dim=-1, keepdim=True))
        return torch.cat(features, dim=-1)


class PillarVFE(_PillarVFEBase):
    """Reads `voxels` (V, P, C), `voxel_num_points` (V,), `voxel_coords` (V, 4) as (b, z, y, x); writes
    `pillar_features` (V, NUM_FILTERS[-1]). Empty point slots are zeroed before the PFN layers."""

    def __init__(self, model_cfg, num_point_features, voxel_size, point_cloud_range, **kwargs):
        super().__init__(PFNLayer, model_cfg, num_point_features, voxel_size, point_cloud_range)

    def forward(self, batch_dict, **kwargs):
        voxels, num_points = batch_dict['voxels'], batch_dict['voxel_num_points']
        coords = batch_dict['voxel_coords']
        xyz = voxels[:, :, :3]
        mean = xyz.sum(dim=1, keepdim=True) / num_points.type_as(voxels).clamp_min(1).view(-1, 1, 1)
        features = self._decorate(voxels, xyz, mean, coords[:, None, [3, 2, 1]])
        filled = torch.arange(voxels.shape[1], device=voxels.device)[None] < num_points[:, None]
        features = features * filled[..., None].type_as(features)
        for pfn in self.pfn_layers:
            features = pfn(features)
        batch_dict['pillar_features'] = features.squeeze(1)
        return batch_dict


class DynPillarVFE(_PillarVFEBase):
    """Reads `points` (N, 1 + C) with the batch index first; writes `pillar_features` (V, NUM_FILTERS[-1])
    and `voxel_coords` (V, 4) as (b, 0, y, x) for every pillar holding a point inside the x-y grid.
    The pillar centre's z is the range's middle (one z cell); OpenPCDet's version uses torch_scatter."""

    READS_POINTS = True   # the loader must collate `points` (models.batch_inputs)

    def __init__(self, model_cfg, num_point_features, voxel_size, grid_size, point_cloud_range, **kwargs):
        super().__init__(PFNLayerV2, model_cfg, num_point_features, voxel_size, point_cloud_range)
        self.grid_size = [int(g) for g in grid_size]

    def forward(self, batch_dict, **kwargs):
        points = batch_dict['points']
        cells, inside = cell_of_points(points[:, 1:3], self.point_cloud_range, self.voxel_size, self.grid_size, 2)
        points, cells = points[inside], cells[inside]
        nx, ny = self.grid_size[:2]
        keys = (points[:, 0].long() * nx + cells[:, 0]) * ny + cells[:, 1]
        unique, group, counts = group_points(keys)
        xyz = points[:, 1:4].contiguous()
        mean = scatter_mean(xyz, group, counts)[group]
        features = self._decorate(points[:, 1:], xyz, mean, F.pad(cells, (0, 1)))
        for pfn in self.pfn_layers:
            features = pfn(features, group, len(unique))
        batch_dict['pillar_features'] = features
        batch_dict['voxel_coords'] = torch.stack(
            [unique // (nx * ny), torch.zeros_like(unique), unique % ny, (unique // ny) % nx], dim=1).int()
        return batch_dict


class DynamicPillarVFESimple2D(DynPillarVFE):
    """PillarNet's VFE: like DynPillarVFE, but each point is decorated only with its offset from the pillar
    centre (first) and its raw features (x, y, z dropped without USE_ABSLOTE_XYZ), plus the distance with
    WITH_DISTANCE; writes `pillar_features` (V, NUM_FILTERS[-1]) and `pillar_coords` (V, 3) as (b, y, x).
    USE_CLUSTER_XYZ is read by OpenPCDet's config but not used by its module."""

    @staticmethod
    def point_width(model_cfg, num_point_features):
        return num_point_features + (3 if model_cfg.USE_ABSLOTE_XYZ else 0) + (1 if model_cfg.WITH_DISTANCE else 0)

    def _decorate(self, raw, xyz, cluster_mean, cell_xyz):
        centre = cell_xyz.to(xyz.dtype) * xyz.new_tensor(self.voxel_size) + xyz.new_tensor(self.offset)
        features = [xyz - centre, raw if self.use_absolute_xyz else raw[..., 3:]]
        if self.with_distance:
            features.append(torch.linalg.vector_norm(xyz, dim=-1, keepdim=True))
        return torch.cat(features, dim=-1)

    def forward(self, batch_dict, **kwargs):
        batch_dict = super().forward(batch_dict)
        batch_dict['pillar_coords'] = batch_dict.pop('voxel_coords')[:, [0, 2, 3]].contiguous()
        return batch_dict
