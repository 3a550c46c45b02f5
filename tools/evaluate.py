"""Occupancy metrics of an ALSO checkpoint on the val split (no augmentation).

    python tools/evaluate.py --cfg_file cfgs/also_pretrain.yaml --ckpt output/.../ckpt/checkpoint_epoch_N.pth
"""
import argparse

import torch

from also_pcdet.config import add_config_arguments, config_from_args
from also_pcdet.datasets import build_dataloader
from also_pcdet.engine.batch import collate_for
from also_pcdet.engine.evaluation import evaluate, format_metrics, load_trained
from also_pcdet.models import build_network


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(p)
    p.add_argument('--ckpt', required=True, help='a training checkpoint (with the occupancy head)')
    p.add_argument('--batch_size', type=int, default=None, help='default OPTIMIZATION.BATCH_SIZE_PER_GPU')
    p.add_argument('--workers', type=int, default=2)
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    dataset, loader = build_dataloader(cfg.DATA_CONFIG, args.batch_size or cfg.OPTIMIZATION.BATCH_SIZE_PER_GPU,
                                       args.workers, training=False)
    model = load_trained(build_network(cfg.MODEL, dataset), args.ckpt).to(device)
    metrics = evaluate(model, collate_for(loader, model), device)
    print(f'{args.ckpt} on {len(dataset)} {dataset.mode} sweeps of {dataset.root_path}')
    print(format_metrics(metrics))
    return metrics


if __name__ == '__main__':
    main()
