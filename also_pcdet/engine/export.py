"""Turn a training checkpoint into the stock `--pretrained_model` file OpenPCDet's loader reads."""
from .checkpoint import load_checkpoint, save_atomic
from ..version import CHECKPOINT_VERSION

BACKBONE_PREFIXES = ('vfe.', 'backbone_3d.', 'map_to_bev_module.', 'backbone_2d.')


def backbone_state(model_state: dict) -> dict:
    """Only the transferable parts: vfe, backbone_3d, map_to_bev_module and backbone_2d."""
    kept = {k: v for k, v in model_state.items() if k.startswith(BACKBONE_PREFIXES)}
    if not any(k.startswith('backbone_3d.') for k in kept):
        raise ValueError('no backbone_3d.* weights in this checkpoint: is it an ALSO/OpenPCDet detector checkpoint?')
    return kept


def export_backbone(ckpt_path, out_path) -> dict:
    """Write `{'model_state': backbone weights, 'epoch', 'it', 'version'}` atomically to `out_path`."""
    ckpt = load_checkpoint(ckpt_path)
    if 'model_state' not in ckpt:
        raise KeyError(f'{ckpt_path}: no "model_state" entry; keys are {sorted(ckpt)}')
    state = {'model_state': backbone_state(ckpt['model_state']), 'epoch': int(ckpt.get('epoch', 0)),
             'it': int(ckpt.get('it', 0)), 'version': CHECKPOINT_VERSION}
    save_atomic(state, out_path)
    return state
