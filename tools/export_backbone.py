"""Turn a training checkpoint (checkpoint_epoch_N.pth, latest_model.pth) into the stock pretrained backbone.

    python tools/export_backbone.py --ckpt output/.../ckpt/checkpoint_epoch_500.pth --out pretrained_backbone.pth

The output is `{'model_state': vfe / backbone_3d / map_to_bev_module / backbone_2d weights (spconv 2.x
layout), 'epoch', 'it', 'version'}`, for OpenPCDet's `tools/train.py --pretrained_model`.
"""
import argparse
import sys
from collections import Counter

from also_pcdet.engine.export import export_backbone


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--ckpt', required=True, help='a checkpoint written by tools/train.py')
    parser.add_argument('--out', required=True, help='where to write the backbone file')
    args = parser.parse_args(argv)
    try:
        state = export_backbone(args.ckpt, args.out)
    except (FileNotFoundError, KeyError, RuntimeError, ValueError) as err:
        raise SystemExit(f'export_backbone: {err}') from err
    parts = Counter(key.split('.', 1)[0] for key in state['model_state'])
    print(f"wrote {args.out}: {len(state['model_state'])} tensors ({', '.join(f'{k} {n}' for k, n in parts.items())}), "
          f"epoch {state['epoch']}, iteration {state['it']}, version {state['version']}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
