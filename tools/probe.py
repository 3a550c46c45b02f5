"""Few-label linear probe of a pretrained backbone against a randomly initialised one, on sweeps with
per-point labels (e.g. from tools/make_synthetic.py). Features and classifier: also_pcdet/engine/probe.py.

    python tools/probe.py --cfg_file cfgs/also_pretrain_demo.yaml --ckpt .../checkpoint_epoch_N.pth \
        [--fraction 0.01] [--set DATA_CONFIG.DATA_PATH data/synthetic_kitti]
"""
import argparse

import torch

from also_pcdet.config import add_config_arguments, config_from_args
from also_pcdet.engine.cli import run_main
from also_pcdet.engine.probe import run_probe


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(p)
    p.add_argument('--ckpt', required=True, help='ALSO checkpoint or exported pretrained_backbone.pth')
    p.add_argument('--fraction', type=float, default=0.01, help='share of the training points labelled')
    p.add_argument('--seed', type=int, default=0, help='label subset, random backbone and classifier seed')
    p.add_argument('--steps', type=int, default=300, help='full-batch Adam steps of the linear classifier')
    p.add_argument('--max_sweeps', type=int, default=None, help='use at most this many sweeps per split')
    p.add_argument('--brief', action='store_true', help='print one line: pretrained vs random-init mIoU')
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    options = dict(fraction=args.fraction, seed=args.seed, steps=args.steps, device=device, max_sweeps=args.max_sweeps)
    results = {'ALSO': run_probe(cfg.MODEL, cfg.DATA_CONFIG, args.ckpt, **options),
               'random init': run_probe(cfg.MODEL, cfg.DATA_CONFIG, None, **options)}
    names = results['ALSO']['class_names']
    if args.brief:
        print(f'linear probe ({args.fraction:.1%} of the training points labelled, seed {args.seed}): mIoU '
              f'{results["ALSO"]["miou"]:.3f} from the ALSO checkpoint vs {results["random init"]["miou"]:.3f} '
              f'from a random backbone')
        return results
    print(f'linear probe, {args.fraction:.1%} of the training points labelled '
          f'({results["ALSO"]["train_points"]:,}), mIoU on {results["ALSO"]["val_points"]:,} val points')
    print(f'features per point: {" + ".join(results["ALSO"]["features"])}')
    print(f'{"backbone":<12} {"mIoU":>6} ' + ' '.join(f'{n:>8}' for n in names))
    for label, result in results.items():
        print(f'{label:<12} {result["miou"]:6.3f} ' + ' '.join(f'{v:8.3f}' for v in result['iou']))
    return results


if __name__ == '__main__':
    run_main(main)
