"""Turn a training checkpoint into the stock `--pretrained_model` file OpenPCDet's loader reads."""
import torch

from .checkpoint import load_with_model_state, save_atomic
from ..version import CHECKPOINT_VERSION

BACKBONE_PREFIXES = ('vfe.', 'backbone_3d.', 'map_to_bev_module.', 'backbone_2d.')
FIRST_CONV = 'backbone_3d.conv_input.0.weight'


def backbone_state(model_state: dict, stock_input_scale=None) -> dict:
    """Only the transferable parts: vfe, backbone_3d, map_to_bev_module and backbone_2d.

    `stock_input_scale[i]` > 1 means stock OpenPCDet feeds input feature i that much larger than
    pretraining saw (nuScenes intensity: 0-255 vs 0-1). MeanVFE and the bias-free first sparse conv are
    linear, so dividing that input channel of `backbone_3d.conv_input.0.weight` gives the same features."""
    kept = {k: v for k, v in model_state.items() if k.startswith(BACKBONE_PREFIXES)}
    if not any(k.startswith('backbone_3d.') for k in kept):
        raise ValueError('no backbone_3d.* weights in this checkpoint: is it an ALSO/OpenPCDet detector checkpoint?')
    if stock_input_scale and any(scale != 1 for scale in stock_input_scale):
        if FIRST_CONV not in kept or any(k.startswith('vfe.') for k in kept):
            raise ValueError(f'stock_input_scale {stock_input_scale} can only be folded into {FIRST_CONV} '
                             f'behind a weight-free VFE (MeanVFE)')
        weight = kept[FIRST_CONV].clone()
        if weight.shape[-1] != len(stock_input_scale):
            raise ValueError(f'{FIRST_CONV} has {weight.shape[-1]} input channels, stock_input_scale lists '
                             f'{len(stock_input_scale)}')
        weight /= torch.tensor(stock_input_scale, dtype=weight.dtype)
        kept[FIRST_CONV] = weight
    return kept


def export_backbone(ckpt_path, out_path) -> dict:
    """Write `{'model_state': backbone weights, 'epoch', 'it', 'version'}` atomically to `out_path`."""
    ckpt = load_with_model_state(ckpt_path)
    state = {'model_state': backbone_state(ckpt['model_state'], ckpt.get('stock_input_scale')),
             'epoch': int(ckpt.get('epoch', 0)), 'it': int(ckpt.get('it', 0)), 'version': CHECKPOINT_VERSION}
    save_atomic(state, out_path)
    return state
