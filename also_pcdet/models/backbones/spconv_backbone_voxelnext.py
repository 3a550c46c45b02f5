"""VoxelNeXt's fully sparse backbones (OpenPCDet's VoxelResBackBone8xVoxelNeXt / ...2D layer names).

Residual sparse stages at strides 1..32; the stride-16 and stride-32 outputs are put back onto the stride-8
cells, summed per BEV cell with x_conv4 and refined by sparse 2D convs. There is no dense BEV map: the output
`encoded_spconv_tensor` is a 2D sparse tensor (stride 8, indices (b, y, x)) holding only the active cells."""
from functools import partial

import spconv.pytorch as spconv
import torch
from torch import nn

from .spconv_backbone import SUBM, SparseBasicBlock, _bn1d, post_act_block


def sum_onto_bev(features, indices, spatial_shape, batch_size):
    """A 2D sparse tensor with one row per distinct (b, y, x) of `indices`, the sum of its rows' features."""
    cells, inverse = torch.unique(indices, dim=0, return_inverse=True)
    summed = features.new_zeros((len(cells), features.shape[1])).index_add_(0, inverse, features)
    return spconv.SparseConvTensor(summed, cells, spatial_shape, batch_size)


def upscaled(indices, factor):
    """Sparse indices (b, ...) with the spatial coordinates multiplied by `factor`."""
    out = indices.clone()
    out[:, 1:] *= factor
    return out


class _VoxelNeXtBase(nn.Module):
    """Shared stages conv2..conv6 (a strided block then residual blocks), BEV output and forward."""

    ndim = 3

    def _stages(self, channels, kernel_sizes, num_blocks):
        """conv2..conv6: a strided sparse conv (kernel `kernel_sizes[i]`, the last one twice) then
        `num_blocks[i]` SparseBasicBlocks; conv6 keeps the channels of conv5."""
        res = partial(SparseBasicBlock, ndim=self.ndim)
        outs = [*channels[1:], channels[-1]]
        kernels = [*kernel_sizes, kernel_sizes[-1]]
        for i, (c_in, c_out, k, n) in enumerate(zip(channels, outs, kernels, num_blocks), start=2):
            self.add_module(f'conv{i}', spconv.SparseSequential(
                post_act_block(c_in, c_out, k, indice_key=f'spconv{i}', stride=2, padding=k // 2,
                               conv_type='spconv', ndim=self.ndim),
                *(res(c_out, f'res{i}') for _ in range(n))))

    def _bev_layers(self, c_in, out_channel):
        self.conv_out = spconv.SparseSequential(
            spconv.SparseConv2d(c_in, out_channel, 3, stride=1, padding=1, bias=False, indice_key='spconv_down2'),
            _bn1d(out_channel), nn.ReLU())
        self.shared_conv = spconv.SparseSequential(
            spconv.SubMConv2d(out_channel, out_channel, 3, stride=1, padding=1, bias=True),
            nn.BatchNorm1d(out_channel), nn.ReLU(True))
        self.num_point_features = out_channel

    def _encode(self, x, batch_dict):
        """Run conv1..conv6 on `x`; return the per-stage tensors and the stride-8 BEV output."""
        stages = {}
        for i in range(1, 7):
            x = getattr(self, f'conv{i}')(x)
            stages[f'x_conv{i}'] = x
        conv4, conv5, conv6 = stages['x_conv4'], stages['x_conv5'], stages['x_conv6']
        indices = torch.cat([conv4.indices, upscaled(conv5.indices, 2), upscaled(conv6.indices, 4)])
        features = torch.cat([conv4.features, conv5.features, conv6.features])
        stages['x_conv4'] = conv4.replace_feature(features)   # stride 8, 16 and 32 sites on the stride-8 grid
        stages['x_conv4'].indices = indices
        bev_indices = indices[:, [0, 2, 3]] if self.ndim == 3 else indices
        bev = sum_onto_bev(features, bev_indices, list(conv4.spatial_shape[-2:]), conv4.batch_size)
        out = self.shared_conv(self.conv_out(bev))
        batch_dict['encoded_spconv_tensor'] = out
        batch_dict['encoded_spconv_tensor_stride'] = 8
        return stages


class VoxelResBackBone8xVoxelNeXt(_VoxelNeXtBase):
    """Reads `voxel_features` / `voxel_coords` (b, z, y, x); CHANNELS (5), SPCONV_KERNEL_SIZES (4) and
    OUT_CHANNEL as in OpenPCDet (defaults [16, 32, 64, 128, 128], [3, 3, 3, 3], 128)."""

    def __init__(self, model_cfg, input_channels, grid_size, **kwargs):
        super().__init__()
        self.model_cfg = model_cfg
        channels = list(model_cfg.get('CHANNELS', [16, 32, 64, 128, 128]))
        kernel_sizes = list(model_cfg.get('SPCONV_KERNEL_SIZES', [3, 3, 3, 3]))
        self.sparse_shape = [int(grid_size[2]) + 1, int(grid_size[1]), int(grid_size[0])]
        self.conv_input = spconv.SparseSequential(
            SUBM[3](input_channels, channels[0], 3, padding=1, bias=False, indice_key='subm1'),
            _bn1d(channels[0]), nn.ReLU())
        self.conv1 = spconv.SparseSequential(SparseBasicBlock(channels[0], 'res1'), SparseBasicBlock(channels[0], 'res1'))
        self._stages(channels, kernel_sizes, [2] * 5)
        self._bev_layers(channels[3], model_cfg.get('OUT_CHANNEL', 128))
        self.backbone_channels = {f'x_conv{i + 1}': c for i, c in enumerate(channels[:4])}

    def forward(self, batch_dict):
        x = spconv.SparseConvTensor(batch_dict['voxel_features'], batch_dict['voxel_coords'].int(),
                                    self.sparse_shape, batch_dict['batch_size'])
        stages = self._encode(self.conv_input(x), batch_dict)
        batch_dict['multi_scale_3d_features'] = {f'x_conv{i}': stages[f'x_conv{i}'] for i in range(1, 5)}
        batch_dict['multi_scale_3d_strides'] = {f'x_conv{i}': 2 ** (i - 1) for i in range(1, 5)}
        return batch_dict


class VoxelResBackBone8xVoxelNeXt2D(_VoxelNeXtBase):
    """The pillar variant: reads `pillar_features` (32 channels) / `pillar_coords` (b, y, x); sparse 2D stages
    of 32, 64, 128, 256, 256 channels with 3, 4, 6, 3, 3, 3 residual blocks; OUT 256."""

    ndim = 2

    def __init__(self, model_cfg, input_channels, grid_size, **kwargs):
        super().__init__()
        self.model_cfg = model_cfg
        channels = [32, 64, 128, 256, 256]
        self.sparse_shape = [int(grid_size[1]), int(grid_size[0])]
        self.conv1 = spconv.SparseSequential(*(SparseBasicBlock(32, 'res1', ndim=2) for _ in range(3)))
        self._stages(channels, list(model_cfg.get('SPCONV_KERNEL_SIZES', [3, 3, 3, 3])), [4, 6, 3, 3, 3])
        self._bev_layers(256, 256)
        self.backbone_channels = {f'x_conv{i + 1}': c for i, c in enumerate(channels)}

    def forward(self, batch_dict):
        x = spconv.SparseConvTensor(batch_dict['pillar_features'], batch_dict['pillar_coords'].int(),
                                    self.sparse_shape, batch_dict['batch_size'])
        stages = self._encode(x, batch_dict)
        batch_dict['multi_scale_2d_features'] = {f'x_conv{i}': stages[f'x_conv{i}'] for i in range(1, 6)}
        batch_dict['multi_scale_2d_strides'] = {f'x_conv{i}': 2 ** (i - 1) for i in range(1, 6)}
        return batch_dict
