"""MeanVFE: each voxel's feature is the mean of its points (OpenPCDet's `MeanVFE` interface)."""
import torch
from torch import nn


class MeanVFE(nn.Module):
    """Reads `voxels` (V, P, C) and `voxel_num_points` (V,); writes `voxel_features` (V, C)."""
    READS_POINTS = False   # the loader leaves `points` out of the batch (models.batch_inputs)

    def __init__(self, model_cfg, num_point_features, **kwargs):
        super().__init__()
        self.model_cfg = model_cfg
        self.num_point_features = num_point_features

    def get_output_feature_dim(self):
        return self.num_point_features

    def forward(self, batch_dict, **kwargs):
        voxels, num_points = batch_dict['voxels'], batch_dict['voxel_num_points']
        count = torch.clamp_min(num_points.view(-1, 1), 1.0).type_as(voxels)
        batch_dict['voxel_features'] = (voxels.sum(dim=1) / count).contiguous()
        return batch_dict
