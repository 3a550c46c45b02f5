"""Checkpoints released by the official ALSO code (github.com/valeoai/ALSO) into OpenPCDet's `--pretrained_model`
format, for a named detector config.

ALSO wraps a whole OpenPCDet detector as `self.model` of its backbone module, so its converter
(`convert_models.py`) writes `pretrained_backbone_<name>.ckpt` as a flat state dict of the detector's own keys
behind a `model.` prefix (`model.backbone_3d.conv_input.0.weight`, ..., `model.backbone_2d.*`,
`model.global_step`); its Lightning training checkpoints hold the same keys behind `backbone.model.` in
`state_dict`. OpenPCDet's loader reads `checkpoint['model_state']` without the prefix, and ALSO trained with
spconv 2.1, where a convolution may store its weight (kD, kH, kW, out, in) instead of 2.2+'s (out, kD, kH, kW, in)."""
import os
from pathlib import Path

from ..version import CHECKPOINT_VERSION
from .checkpoint import load_checkpoint, save_atomic
from .export import BACKBONE_PREFIXES, backbone_state
from .pretrained_check import BackboneParts, check_pretrained

PREFIXES = ('model.', 'backbone.model.')
# name -> permutation from that layout to spconv 2.2+ (out, kD, kH, kW, in); None: already there
SPCONV_LAYOUTS = {
    'spconv 2.2+ (out, kD, kH, kW, in)': None,
    'spconv 2.1 native (kD, kH, kW, out, in)': (3, 0, 1, 2, 4),
    'spconv 1.x (kD, kH, kW, in, out)': (4, 0, 1, 2, 3),
}
# OpenPCDet datasets that feed intensity 0-255, where every ALSO pretraining saw it in 0-1 (KITTI and KITTI-360
# natively, nuScenes and ONCE divided by 255)
INTENSITY_0_255 = ('NuScenesDataset', 'ONCEDataset')


def official_state(ckpt, path) -> dict:
    """The backbone tensors of an official ALSO checkpoint, without the prefix; ValueError if it is not one."""
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else {}
    for prefix in PREFIXES:
        found = {key[len(prefix):]: value for key, value in state.items()
                 if isinstance(key, str) and key.startswith(prefix) and hasattr(value, 'shape')}
        kept = {key: value for key, value in found.items() if key.startswith(BACKBONE_PREFIXES)}
        if kept:
            return kept
    keys = [key for key in state if isinstance(key, str)][:3] if isinstance(state, dict) else []
    raise ValueError(f'{path}: not an official ALSO checkpoint: no backbone_3d/backbone_2d tensors behind '
                     f'{" or ".join(map(repr, PREFIXES))} (first keys: {keys})')


def is_official_also(ckpt) -> bool:
    """An ALSO release file or Lightning checkpoint rather than an OpenPCDet one (which has `model_state`)."""
    if not isinstance(ckpt, dict) or 'model_state' in ckpt:
        return False
    state = ckpt.get('state_dict', ckpt)
    return isinstance(state, dict) and any(isinstance(k, str) and k.startswith(PREFIXES) for k in state)


def spconv_layout(state: dict, expected: dict) -> str:
    """The one SPCONV_LAYOUTS entry under which the 5-D weights of `state` take the shapes `expected` gives
    them. Weights no layout fits (e.g. another number of input channels) do not vote; ValueError when no
    layout, or more than one, fits all the others."""
    fits = set(SPCONV_LAYOUTS)
    for key, value in state.items():
        if value.dim() != 5 or key not in expected:
            continue
        shapes = {name: tuple(value.shape) if perm is None else tuple(value.permute(perm).shape)
                  for name, perm in SPCONV_LAYOUTS.items()}
        ok = {name for name, shape in shapes.items() if shape == tuple(expected[key])}
        if ok:
            fits &= ok
            if not fits:
                raise ValueError(f'the sparse conv weights are stored in mixed layouts ({key} {tuple(value.shape)} '
                                 f'fits only {sorted(ok)})')
    if len(fits) > 1 and len(fits) < len(SPCONV_LAYOUTS):
        raise ValueError(f'cannot tell the sparse conv weight layout apart: {sorted(fits)} all fit')
    return next(iter(fits)) if len(fits) == 1 else next(iter(SPCONV_LAYOUTS))


def stock_input_scale(detector_cfg, intensity_scale=None) -> list:
    """How much larger than in pretraining the detector feeds each used point feature: intensity_scale (default
    255 for INTENSITY_0_255 datasets, else 1) for `intensity`, 1 for the others."""
    data = detector_cfg.DATA_CONFIG
    if intensity_scale is None:
        intensity_scale = 255.0 if data.get('DATASET') in INTENSITY_0_255 else 1.0
    return [float(intensity_scale) if feature == 'intensity' else 1.0
            for feature in data.POINT_FEATURE_ENCODING.used_feature_list]


def convert_official_also(ckpt_path, detector_cfg, intensity_scale=None) -> tuple:
    """(OpenPCDet backbone state of `detector_cfg`, spconv layout found, input scale folded) from an official
    ALSO checkpoint."""
    state = official_state(load_checkpoint(ckpt_path), ckpt_path)
    expected = {key: tuple(value.shape) for key, value in BackboneParts(detector_cfg).state_dict().items()
                if key.startswith(BACKBONE_PREFIXES)}
    layout = spconv_layout(state, expected)
    permutation = SPCONV_LAYOUTS[layout]
    if permutation is not None:
        state = {key: value.permute(permutation).contiguous() if value.dim() == 5 else value
                 for key, value in state.items()}
    scale = stock_input_scale(detector_cfg, intensity_scale)
    return backbone_state(state, scale), layout, scale


def export_official_also(ckpt_path, out_path, detector_cfg, intensity_scale=None) -> tuple:
    """Convert an official ALSO checkpoint and write `{'model_state', 'epoch', 'it', 'version'}` to `out_path`
    only if OpenPCDet's loader fills every backbone weight of `detector_cfg` from it (ValueError otherwise,
    nothing written). Returns (written state, spconv layout, input scale, LoadCheck)."""
    model_state, layout, scale = convert_official_also(ckpt_path, detector_cfg, intensity_scale)
    state = {'model_state': model_state, 'epoch': 0, 'it': 0, 'version': CHECKPOINT_VERSION}
    out = Path(out_path)
    staging = save_atomic(state, out.with_name(f'.{out.name}.unchecked'))
    try:
        report = check_pretrained(staging, detector_cfg)
        if not report.ok:
            missing = [f'{key} ({why})' for key, why in report.random.items()]
            raise ValueError(f'{ckpt_path} does not fill {len(missing)} backbone weights of the detector: '
                             f'{missing[:3]}{" ..." if missing[3:] else ""}')
        os.replace(staging, out)
    finally:
        staging.unlink(missing_ok=True)
    return state, layout, scale, report
