"""Sparse 3D backbones with OpenPCDet's layer names, so state_dicts load into stock detectors.

Four stages at strides 1, 2, 4, 8 (x_conv1..x_conv4), then a (3, 1, 1) conv that halves z.
Indice keys follow OpenPCDet so that submanifold layers share the same rulebooks."""
from functools import partial

import numpy as np
import spconv.pytorch as spconv
from torch import nn

_bn1d = partial(nn.BatchNorm1d, eps=1e-3, momentum=0.01)


SUBM = {2: spconv.SubMConv2d, 3: spconv.SubMConv3d}
SPARSE = {2: spconv.SparseConv2d, 3: spconv.SparseConv3d}


def post_act_block(c_in, c_out, kernel_size, indice_key, stride=1, padding=0, conv_type='subm', ndim=3):
    """Sparse conv (no bias) -> BatchNorm1d -> ReLU; `conv_type` 'subm' keeps the active sites,
    'spconv' is a regular (strided) sparse conv; `ndim` 3 (voxels) or 2 (pillars / BEV)."""
    if conv_type == 'subm':
        conv = SUBM[ndim](c_in, c_out, kernel_size, bias=False, indice_key=indice_key)
    elif conv_type == 'spconv':
        conv = SPARSE[ndim](c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False,
                            indice_key=indice_key)
    else:
        raise ValueError(f"conv_type must be 'subm' or 'spconv', got {conv_type!r}")
    return spconv.SparseSequential(conv, _bn1d(c_out), nn.ReLU())


_subm = partial(post_act_block, kernel_size=3)
_down = partial(post_act_block, kernel_size=3, stride=2, conv_type='spconv')


class SparseBasicBlock(spconv.SparseModule):
    """Residual block of two submanifold 3x3(x3) convs (with bias unless `bias=False`), BN and ReLU."""

    def __init__(self, channels, indice_key, bias=None, ndim=3):
        super().__init__()
        bias = True if bias is None else bias
        self.conv1 = SUBM[ndim](channels, channels, 3, padding=1, bias=bias, indice_key=indice_key)
        self.bn1 = _bn1d(channels)
        self.relu = nn.ReLU()
        self.conv2 = SUBM[ndim](channels, channels, 3, padding=1, bias=bias, indice_key=indice_key)
        self.bn2 = _bn1d(channels)

    def forward(self, x):
        out = self.conv1(x)
        out = out.replace_feature(self.relu(self.bn1(out.features)))
        out = self.conv2(out)
        out = out.replace_feature(self.relu(self.bn2(out.features) + x.features))
        return out


class _SparseBackbone8x(nn.Module):
    """Shared input layer, output layer and forward; subclasses define conv1..conv4."""

    def __init__(self, model_cfg, input_channels, grid_size, stage_channels):
        super().__init__()
        self.model_cfg = model_cfg
        self.sparse_shape = [int(s) for s in np.asarray(grid_size)[::-1] + [1, 0, 0]]
        self.conv_input = spconv.SparseSequential(
            spconv.SubMConv3d(input_channels, 16, 3, padding=1, bias=False, indice_key='subm1'),
            _bn1d(16), nn.ReLU())
        self.backbone_channels = {f'x_conv{i + 1}': c for i, c in enumerate(stage_channels)}
        self.num_point_features = 128

    def _build_output(self, c_in):
        self.conv_out = spconv.SparseSequential(
            spconv.SparseConv3d(c_in, 128, (3, 1, 1), stride=(2, 1, 1), padding=self.model_cfg.get('last_pad', 0),
                                bias=False, indice_key='spconv_down2'),
            _bn1d(128), nn.ReLU())

    def forward(self, batch_dict):
        """Reads `voxel_features` (V, C), `voxel_coords` (V, 4) as (b, z, y, x) and `batch_size`."""
        x = spconv.SparseConvTensor(features=batch_dict['voxel_features'],
                                    indices=batch_dict['voxel_coords'].int(),
                                    spatial_shape=self.sparse_shape, batch_size=batch_dict['batch_size'])
        features = {}
        x = self.conv_input(x)
        for i, stage in enumerate((self.conv1, self.conv2, self.conv3, self.conv4)):
            x = stage(x)
            features[f'x_conv{i + 1}'] = x
        batch_dict.update({
            'encoded_spconv_tensor': self.conv_out(x),
            'encoded_spconv_tensor_stride': 8,
            'multi_scale_3d_features': features,
            'multi_scale_3d_strides': {'x_conv1': 1, 'x_conv2': 2, 'x_conv3': 4, 'x_conv4': 8},
        })
        return batch_dict


class VoxelBackBone8x(_SparseBackbone8x):
    """Plain backbone (SECOND, PV-RCNN, Voxel R-CNN): stage channels 16, 32, 64, 64."""

    def __init__(self, model_cfg, input_channels, grid_size, **kwargs):
        super().__init__(model_cfg, input_channels, grid_size, (16, 32, 64, 64))
        self.conv1 = spconv.SparseSequential(_subm(16, 16, indice_key='subm1'))
        self.conv2 = spconv.SparseSequential(
            _down(16, 32, indice_key='spconv2', padding=1),
            _subm(32, 32, indice_key='subm2'), _subm(32, 32, indice_key='subm2'))
        self.conv3 = spconv.SparseSequential(
            _down(32, 64, indice_key='spconv3', padding=1),
            _subm(64, 64, indice_key='subm3'), _subm(64, 64, indice_key='subm3'))
        self.conv4 = spconv.SparseSequential(
            _down(64, 64, indice_key='spconv4', padding=(0, 1, 1)),
            _subm(64, 64, indice_key='subm4'), _subm(64, 64, indice_key='subm4'))
        self._build_output(64)


class VoxelResBackBone8x(_SparseBackbone8x):
    """Residual backbone (CenterPoint): stage channels 16, 32, 64, 128; `USE_BIAS` for the res convs."""

    def __init__(self, model_cfg, input_channels, grid_size, **kwargs):
        super().__init__(model_cfg, input_channels, grid_size, (16, 32, 64, 128))
        res = partial(SparseBasicBlock, bias=model_cfg.get('USE_BIAS', None))
        self.conv1 = spconv.SparseSequential(res(16, 'res1'), res(16, 'res1'))
        self.conv2 = spconv.SparseSequential(
            _down(16, 32, indice_key='spconv2', padding=1), res(32, 'res2'), res(32, 'res2'))
        self.conv3 = spconv.SparseSequential(
            _down(32, 64, indice_key='spconv3', padding=1), res(64, 'res3'), res(64, 'res3'))
        self.conv4 = spconv.SparseSequential(
            _down(64, 128, indice_key='spconv4', padding=(0, 1, 1)), res(128, 'res4'), res(128, 'res4'))
        self._build_output(128)
