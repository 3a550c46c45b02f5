"""Turn a training checkpoint (checkpoint_epoch_N.pth, latest_model.pth), or a checkpoint released by the official
ALSO code, into the stock pretrained backbone.

    python tools/export_backbone.py --ckpt output/.../ckpt/checkpoint_epoch_500.pth --out pretrained_backbone.pth \
        [--detector_cfg OpenPCDet/tools/cfgs/kitti_models/second.yaml]
    python tools/export_backbone.py --ckpt pretrained_backbone_also_kitti3d_second_epoch_499.ckpt \
        --detector_cfg OpenPCDet/tools/cfgs/kitti_models/second.yaml --out pretrained_backbone.pth

The output is `{'model_state': vfe / backbone_3d / map_to_bev_module / backbone_2d weights (spconv 2.x
layout), 'epoch', 'it', 'version'}`, for OpenPCDet's `tools/train.py --pretrained_model`. With --detector_cfg
the file is written only if every backbone key of that detector loads from it. An official ALSO file (flat
state dict, `model.` prefix) needs the detector config it is for: its keys are renamed and its sparse conv
weights put in spconv 2.2+ layout.
"""
import argparse
import os
from collections import Counter
from pathlib import Path

from also_pcdet.detector_config import load_detector_cfg
from also_pcdet.engine.checkpoint import load_checkpoint
from also_pcdet.engine.cli import add_debug_flag, run_main
from also_pcdet.engine.export import export_backbone
from also_pcdet.engine.official_also import export_official_also, is_official_also
from also_pcdet.engine.pretrained_check import require_fit


def export_official(args):
    if not args.detector_cfg:
        raise ValueError(f'{args.ckpt} is an official ALSO checkpoint: name the OpenPCDet detector config it is '
                         f'for with --detector_cfg')
    state, layout, scale, report = export_official_also(args.ckpt, args.out, load_detector_cfg(args.detector_cfg),
                                                        args.intensity_scale)
    print(f'{args.ckpt}: official ALSO checkpoint, sparse conv weights in {layout}; input scale folded into the '
          f'first conv: {scale}')
    print(f'{args.detector_cfg}: {report.done_line}: every backbone key loads')
    return state


def export_checked(args):
    """A training checkpoint's export; with --detector_cfg staged and renamed into place only if it fits."""
    if not args.detector_cfg:
        return export_backbone(args.ckpt, args.out)
    detector, out = load_detector_cfg(args.detector_cfg), Path(args.out)
    staging = out.with_name(f'.{out.name}.unchecked')
    try:
        state = export_backbone(args.ckpt, staging, detector.MODEL.get('VFE'))
        report = require_fit(staging, detector, args.detector_cfg)
        os.replace(staging, out)
    finally:
        staging.unlink(missing_ok=True)
    print(f'{args.detector_cfg}: {report.done_line}: every backbone key loads')
    return state


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_debug_flag(parser)
    parser.add_argument('--ckpt', required=True, help='a checkpoint written by tools/train.py, or an official '
                        'ALSO pretrained_backbone_*.ckpt')
    parser.add_argument('--out', required=True, help='where to write the backbone file')
    parser.add_argument('--detector_cfg', help='the OpenPCDet detector config the file is for, e.g. '
                        'OpenPCDet/tools/cfgs/kitti_models/second.yaml: no file is written unless every backbone '
                        'key of it loads (required for official ALSO checkpoints)')
    parser.add_argument('--intensity_scale', type=float, help='official ALSO checkpoints: how much larger the '
                        'detector feeds intensity than pretraining saw (default 255 for nuScenes and ONCE '
                        'detectors, 1 otherwise)')
    args = parser.parse_args(argv)
    try:
        state = export_official(args) if is_official_also(load_checkpoint(args.ckpt)) else export_checked(args)
    except (FileNotFoundError, KeyError, RuntimeError, ValueError) as err:
        raise SystemExit(f'export_backbone: {err}') from err
    parts = Counter(key.split('.', 1)[0] for key in state['model_state'])
    print(f"wrote {args.out}: {len(state['model_state'])} tensors ({', '.join(f'{k} {n}' for k, n in parts.items())}), "
          f"epoch {state['epoch']}, iteration {state['it']}, version {state['version']}")
    return 0


if __name__ == '__main__':
    run_main(main)
