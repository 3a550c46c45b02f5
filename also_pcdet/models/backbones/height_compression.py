"""HeightCompression: fold the stride-8 sparse volume's z axis into BEV channels."""
from torch import nn


class HeightCompression(nn.Module):
    """Reads `encoded_spconv_tensor`; writes `spatial_features` (B, C*D, H, W) and its stride."""

    def __init__(self, model_cfg, **kwargs):
        super().__init__()
        self.model_cfg = model_cfg
        self.num_bev_features = model_cfg.NUM_BEV_FEATURES

    def forward(self, batch_dict):
        dense = batch_dict['encoded_spconv_tensor'].dense()
        n, c, d, h, w = dense.shape
        if c * d != self.num_bev_features:
            raise ValueError(
                f"HeightCompression: {c} channels x {d} z cells = {c * d} != NUM_BEV_FEATURES "
                f"{self.num_bev_features}; the voxel grid needs 40 z cells for 2 BEV slices")
        batch_dict['spatial_features'] = dense.view(n, c * d, h, w)
        batch_dict['spatial_features_stride'] = batch_dict['encoded_spconv_tensor_stride']
        return batch_dict
