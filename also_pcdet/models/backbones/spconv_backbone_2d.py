"""PillarNet's 2D sparse backbones (OpenPCDet's PillarBackBone8x / PillarRes18BackBone8x layer names).

Sparse 2D stages on the pillar grid at strides 1, 2, 4, 8 (32, 64, 128, 256 channels), then a dense stride-16
stage (x_conv5). They read `pillar_features` / `pillar_coords` (b, y, x) from DynamicPillarVFESimple2D and
write `multi_scale_2d_features` for BaseBEVBackboneV1. The 32 input channels are fixed, as in OpenPCDet."""
from functools import partial

import spconv.pytorch as spconv
from torch import nn

from .spconv_backbone import SparseBasicBlock, post_act_block

_bn2d = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01)
_subm = partial(post_act_block, kernel_size=3, ndim=2)
_down = partial(post_act_block, kernel_size=3, stride=2, padding=1, conv_type='spconv', ndim=2)
STAGE_CHANNELS = (32, 64, 128, 256, 256)


def dense_block(c_in, c_out, stride=1):
    """3x3 Conv2d (no bias) -> BatchNorm2d -> ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, padding=1, bias=False), _bn2d(c_out), nn.ReLU())


class BasicBlock(nn.Module):
    """Dense residual block: two 3x3 convs with bias, BN, ReLU after the sum."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=True)
        self.bn1 = _bn2d(channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=True)
        self.bn2 = _bn2d(channels)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


class _PillarBackbone8x(nn.Module):
    def __init__(self, model_cfg, grid_size):
        super().__init__()
        self.model_cfg = model_cfg
        self.sparse_shape = [int(grid_size[1]), int(grid_size[0])]
        self.num_point_features = STAGE_CHANNELS[-1]
        self.backbone_channels = {f'x_conv{i + 1}': c for i, c in enumerate(STAGE_CHANNELS)}

    def forward(self, batch_dict):
        x = spconv.SparseConvTensor(batch_dict['pillar_features'], batch_dict['pillar_coords'].int(),
                                    self.sparse_shape, batch_dict['batch_size'])
        features = {}
        for i, stage in enumerate((self.conv1, self.conv2, self.conv3, self.conv4)):
            x = stage(x)
            features[f'x_conv{i + 1}'] = x
        features['x_conv4'] = x.dense()
        features['x_conv5'] = self.conv5(features['x_conv4'])
        batch_dict['multi_scale_2d_features'] = features
        batch_dict['multi_scale_2d_strides'] = {f'x_conv{i + 1}': 2 ** i for i in range(5)}
        return batch_dict


class PillarBackBone8x(_PillarBackbone8x):
    """Plain stages: sparse (2, 3, 3, 3 convs), dense stride-16 stage of 3 convs."""

    def __init__(self, model_cfg, input_channels, grid_size, **kwargs):
        super().__init__(model_cfg, grid_size)
        self.conv1 = spconv.SparseSequential(_subm(32, 32, indice_key='subm1'), _subm(32, 32, indice_key='subm1'))
        for i, (c_in, c_out) in enumerate(zip(STAGE_CHANNELS[:3], STAGE_CHANNELS[1:4]), start=2):
            self.add_module(f'conv{i}', spconv.SparseSequential(
                _down(c_in, c_out, indice_key=f'spconv{i}'),
                _subm(c_out, c_out, indice_key=f'subm{i}'), _subm(c_out, c_out, indice_key=f'subm{i}')))
        self.conv5 = nn.Sequential(dense_block(256, 256, stride=2), dense_block(256, 256), dense_block(256, 256))


class PillarRes18BackBone8x(_PillarBackbone8x):
    """Residual stages (two SparseBasicBlocks each), dense stride-16 stage with two BasicBlocks."""

    def __init__(self, model_cfg, input_channels, grid_size, **kwargs):
        super().__init__(model_cfg, grid_size)
        res = partial(SparseBasicBlock, ndim=2)
        self.conv1 = spconv.SparseSequential(res(32, 'res1'), res(32, 'res1'))
        for i, (c_in, c_out) in enumerate(zip(STAGE_CHANNELS[:3], STAGE_CHANNELS[1:4]), start=2):
            self.add_module(f'conv{i}', spconv.SparseSequential(
                _down(c_in, c_out, indice_key=f'spconv{i}'), res(c_out, f'res{i}'), res(c_out, f'res{i}')))
        self.conv5 = nn.Sequential(dense_block(256, 256, stride=2), BasicBlock(256), BasicBlock(256))
