"""BaseBEVBackbone: strided 2D conv stages, each upsampled back to a common resolution and concatenated."""
import torch
from torch import nn


def _bn2d(channels):
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


def _stage(c_in, c_out, stride, num_layers):
    """ZeroPad + strided 3x3 conv, then `num_layers` 3x3 convs; each conv followed by BN + ReLU."""
    layers = [nn.ZeroPad2d(1), nn.Conv2d(c_in, c_out, 3, stride=stride, padding=0, bias=False),
              _bn2d(c_out), nn.ReLU()]
    for _ in range(num_layers):
        layers += [nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), _bn2d(c_out), nn.ReLU()]
    return nn.Sequential(*layers)


def _upsample(c_in, c_out, stride, conv_for_no_stride):
    """Transposed conv for strides > 1 (and 1 unless `conv_for_no_stride`); a strided conv with
    stride round(1/s) for fractional strides s < 1 (and for 1 with `conv_for_no_stride`)."""
    if stride > 1 or (stride == 1 and not conv_for_no_stride):
        k = int(stride)
        conv = nn.ConvTranspose2d(c_in, c_out, k, stride=k, bias=False)
    else:
        k = int(round(1 / stride))
        conv = nn.Conv2d(c_in, c_out, k, stride=k, bias=False)
    return nn.Sequential(conv, _bn2d(c_out), nn.ReLU())


class BaseBEVBackbone(nn.Module):
    """Reads `spatial_features` (B, input_channels, H, W); writes `spatial_features_2d`.

    Config: LAYER_NUMS / LAYER_STRIDES / NUM_FILTERS (one entry per stage), UPSAMPLE_STRIDES /
    NUM_UPSAMPLE_FILTERS (one per stage, plus an optional extra stride for a final deblock on the
    concatenation), USE_CONV_FOR_NO_STRIDE."""

    def __init__(self, model_cfg, input_channels):
        super().__init__()
        self.model_cfg = model_cfg
        layer_nums = model_cfg.get('LAYER_NUMS') or []
        layer_strides = model_cfg.get('LAYER_STRIDES') or []
        num_filters = model_cfg.get('NUM_FILTERS') or []
        up_strides = model_cfg.get('UPSAMPLE_STRIDES') or []
        up_filters = model_cfg.get('NUM_UPSAMPLE_FILTERS') or []
        if not len(layer_nums) == len(layer_strides) == len(num_filters):
            raise ValueError('LAYER_NUMS, LAYER_STRIDES and NUM_FILTERS need the same length')
        if len(up_strides) != len(up_filters):
            raise ValueError('UPSAMPLE_STRIDES and NUM_UPSAMPLE_FILTERS need the same length')

        c_ins = [input_channels, *num_filters[:-1]]
        conv_for_no_stride = model_cfg.get('USE_CONV_FOR_NO_STRIDE', False)
        self.blocks = nn.ModuleList(
            _stage(c_in, c_out, s, n) for c_in, c_out, s, n in zip(c_ins, num_filters, layer_strides, layer_nums))
        self.deblocks = nn.ModuleList(
            _upsample(c_in, c_out, s, conv_for_no_stride)
            for c_in, c_out, s in zip(num_filters, up_filters, up_strides))

        if up_strides:
            channels = sum(up_filters)
        else:
            channels = sum(num_filters) if num_filters else input_channels
        if len(up_strides) > len(layer_nums):
            k = int(up_strides[-1])
            self.deblocks.append(nn.Sequential(
                nn.ConvTranspose2d(channels, channels, k, stride=k, bias=False), _bn2d(channels), nn.ReLU()))
        self.num_bev_features = channels

    def forward(self, data_dict):
        x = data_dict['spatial_features']
        outs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            outs.append(self.deblocks[i](x) if len(self.deblocks) > 0 else x)
        if outs:
            x = torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]
        if len(self.deblocks) > len(self.blocks):
            x = self.deblocks[-1](x)
        data_dict['spatial_features_2d'] = x
        return data_dict


class BaseBEVBackboneV1(nn.Module):
    """PillarNet's neck: reads `multi_scale_2d_features` x_conv4 (stride 8) and x_conv5 (stride 16); x_conv5
    goes through block 1 and both are upsampled (deblocks 0, 1) to stride 8, concatenated and refined by
    block 0; writes `spatial_features_2d`. Two levels; blocks keep NUM_FILTERS[i] channels (stride 1)."""

    def __init__(self, model_cfg, **kwargs):
        super().__init__()
        self.model_cfg = model_cfg
        layer_nums, num_filters = model_cfg.LAYER_NUMS, model_cfg.NUM_FILTERS
        up_strides, up_filters = model_cfg.UPSAMPLE_STRIDES, model_cfg.NUM_UPSAMPLE_FILTERS
        if not len(layer_nums) == len(num_filters) == len(up_strides) == len(up_filters) == 2:
            raise ValueError('BaseBEVBackboneV1 needs two entries in LAYER_NUMS, NUM_FILTERS, UPSAMPLE_STRIDES '
                             'and NUM_UPSAMPLE_FILTERS')
        self.blocks = nn.ModuleList(_stage(c, c, 1, n) for c, n in zip(num_filters, layer_nums))
        self.deblocks = nn.ModuleList(_upsample(c_in, c_out, s, conv_for_no_stride=False)
                                      for c_in, c_out, s in zip(num_filters, up_filters, up_strides))
        self.num_bev_features = sum(up_filters)

    def forward(self, data_dict):
        features = data_dict['multi_scale_2d_features']
        ups = [self.deblocks[0](features['x_conv4']), self.deblocks[1](self.blocks[1](features['x_conv5']))]
        data_dict['spatial_features_2d'] = self.blocks[0](torch.cat(ups, dim=1))
        return data_dict
