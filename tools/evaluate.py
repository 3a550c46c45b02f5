"""Occupancy metrics of an ALSO checkpoint on the val split (no augmentation).

    python tools/evaluate.py --cfg_file cfgs/also_pretrain.yaml --ckpt output/.../ckpt/checkpoint_epoch_N.pth
"""
import argparse

import torch

from also_pcdet.config import add_config_arguments, config_from_args
from also_pcdet.datasets import build_dataloader
from also_pcdet.engine.batch import collate_for
from also_pcdet.engine.cli import run_main
from also_pcdet.engine.evaluation import evaluate, format_metrics, load_trained
from also_pcdet.models import build_network


def brief_line(metrics: dict) -> str:
    """What the checkpoint's occupancy predictions are worth, next to the trivial "all empty" predictor."""
    gain = metrics['occ_acc'] - metrics['occ_acc_all_empty']
    return (f'occupancy accuracy {metrics["occ_acc"]:.3f} on {metrics["sweeps"]} held-out sweeps, against '
            f'{metrics["occ_acc_all_empty"]:.3f} for answering "empty" everywhere ({gain:+.3f}); occupied recall '
            f'{metrics["occ_recall"]:.3f}, occ_miou {metrics["occ_miou"]:.3f}')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(p)
    p.add_argument('--ckpt', required=True, help='a training checkpoint (with the occupancy head)')
    p.add_argument('--batch_size', type=int, default=None, help='default OPTIMIZATION.BATCH_SIZE_PER_GPU')
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--brief', action='store_true', help='one line: accuracy next to answering "empty" everywhere')
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    dataset, loader = build_dataloader(cfg.DATA_CONFIG, args.batch_size or cfg.OPTIMIZATION.BATCH_SIZE_PER_GPU,
                                       args.workers, training=False)
    model = load_trained(build_network(cfg.MODEL, dataset), args.ckpt).to(device)
    metrics = evaluate(model, collate_for(loader, model), device)
    print(f'{args.ckpt} on ' + (dataset.describe() if cfg.DATA_CONFIG.get('SOURCES') else
                                f'{len(dataset)} {dataset.mode} sweeps of {dataset.root_path}'))
    print(brief_line(metrics) if args.brief else format_metrics(metrics))
    return metrics


if __name__ == '__main__':
    run_main(main)
