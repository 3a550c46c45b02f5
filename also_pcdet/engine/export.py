"""Turn a training checkpoint into the stock `--pretrained_model` file OpenPCDet's loader reads."""
import torch

from .checkpoint import load_with_model_state, save_atomic
from ..version import CHECKPOINT_VERSION

BACKBONE_PREFIXES = ('vfe.', 'backbone_3d.', 'map_to_bev_module.', 'backbone_2d.')
FIRST_CONV = 'backbone_3d.conv_input.0.weight'
PILLAR_LINEAR = 'vfe.pfn_layers.0.linear.weight'  # PillarVFE / DynPillarVFE: (out, raw features + offsets)


def backbone_state(model_state: dict, stock_input_scale=None, vfe_cfg=None) -> dict:
    """Only the transferable parts: vfe, backbone_3d, map_to_bev_module and backbone_2d.

    `stock_input_scale[i]` > 1 means stock OpenPCDet feeds input feature i that much larger than
    pretraining saw (nuScenes intensity: 0-255 vs 0-1). The first layer that sees the raw features is linear
    in them, so dividing its weights for that feature gives the same features: the bias-free first sparse conv
    behind MeanVFE (`backbone_3d.conv_input.0.weight`), or a pillar VFE's first PFN linear layer, whose
    columns start with the raw features (without x, y, z when `vfe_cfg.USE_ABSLOTE_XYZ` is false)."""
    kept = {k: v for k, v in model_state.items() if k.startswith(BACKBONE_PREFIXES)}
    if not kept:
        raise ValueError('no vfe / backbone_3d / map_to_bev_module / backbone_2d weights in this checkpoint: is it '
                         'an ALSO/OpenPCDet detector checkpoint?')
    if stock_input_scale and any(scale != 1 for scale in stock_input_scale):
        scale = torch.tensor(stock_input_scale, dtype=torch.float32)
        if FIRST_CONV in kept and not any(k.startswith('vfe.') for k in kept):
            name, columns = FIRST_CONV, slice(None)
        elif PILLAR_LINEAR in kept and vfe_cfg is not None:
            drop_xyz = not vfe_cfg.get('USE_ABSLOTE_XYZ', True)
            if drop_xyz and any(s != 1 for s in stock_input_scale[:3]):
                raise ValueError(f'stock_input_scale {stock_input_scale}: x, y, z scales cannot be folded')
            name, scale = PILLAR_LINEAR, scale[3:] if drop_xyz else scale
            columns = slice(0, len(scale))
        else:
            raise ValueError(f'stock_input_scale {stock_input_scale} can only be folded into {FIRST_CONV} behind a '
                             f'weight-free VFE (MeanVFE), or into {PILLAR_LINEAR} given the VFE config')
        weight = kept[name].clone()
        channels = weight.shape[-1] if name == FIRST_CONV else weight.shape[1]
        if name == FIRST_CONV and channels != len(scale):
            raise ValueError(f'{FIRST_CONV} has {channels} input channels, stock_input_scale lists {len(scale)}')
        if name == FIRST_CONV:
            weight /= scale.to(weight.dtype)
        else:
            weight[:, columns] /= scale.to(weight.dtype)
        kept[name] = weight
    return kept


def export_backbone(ckpt_path, out_path, vfe_cfg=None) -> dict:
    """Write `{'model_state': backbone weights, 'epoch', 'it', 'version'}` atomically to `out_path`; `vfe_cfg`
    (MODEL.VFE) places a pillar VFE's input scale (see `backbone_state`)."""
    ckpt = load_with_model_state(ckpt_path)
    state = {'model_state': backbone_state(ckpt['model_state'], ckpt.get('stock_input_scale'), vfe_cfg),
             'epoch': int(ckpt.get('epoch', 0)), 'it': int(ckpt.get('it', 0)), 'version': CHECKPOINT_VERSION}
    save_atomic(state, out_path)
    return state
