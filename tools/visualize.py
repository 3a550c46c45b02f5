"""Picture of an ALSO checkpoint's occupancy on one sweep: input points (BEV), predicted occupancy on a
BEV slice and a vertical slice, and the sweep's queries, labels vs predictions.

    python tools/visualize.py --cfg_file cfgs/also_pretrain.yaml --ckpt .../checkpoint_epoch_N.pth \
        [--sweep data/kitti/training/velodyne/000008.bin] [--out occupancy.png]
"""
import argparse
from pathlib import Path

import torch

from also_pcdet.config import add_config_arguments, config_from_args
from also_pcdet.datasets import SweepDataset
from also_pcdet.engine.cli import run_main
from also_pcdet.engine.evaluation import load_trained
from also_pcdet.engine.visualization import render_sample
from also_pcdet.models import build_network


def read_sweep(source, wanted: str):
    """(points, origin, frame id) of the sweep named by path or frame id, read by the layout's own reader."""
    target = Path(wanted).resolve()
    for index in range(len(source)):
        if source.frame_id(index) == wanted or source.path(index).resolve() == target:
            return (*source.read(index), source.frame_id(index))
    raise SystemExit(f'--sweep {wanted}: not among the {len(source)} sweeps of split {source.split!r} under '
                     f'{source.root} (give a path or frame id listed there, or --split train)')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(p)
    p.add_argument('--ckpt', required=True, help='a training checkpoint (with the occupancy head)')
    p.add_argument('--sweep', default=None, help='a sweep of the configured dataset, by file path or frame id, '
                                                 'read with its layout\'s reader (default: the first val sweep)')
    p.add_argument('--split', choices=['train', 'test'], default='test', help='DATA_SPLIT entry --sweep is in')
    p.add_argument('--out', default='occupancy.png', help='PNG to write')
    p.add_argument('--resolution', type=float, default=0.4, help='slice cell size (m); z cells are 4x finer')
    p.add_argument('--bev_z', type=float, default=-1.0, help='height of the BEV slice in the sensor frame (m)')
    p.add_argument('--slice_y', type=float, default=0.0, help='y of the vertical slice (m)')
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if args.split == 'train':
        cfg.DATA_CONFIG.DATA_SPLIT.test = cfg.DATA_CONFIG.DATA_SPLIT.train
    dataset = SweepDataset(cfg.DATA_CONFIG, training=False)
    sample = dataset.prepare(*read_sweep(dataset.source, args.sweep), 0) if args.sweep else dataset[0]
    model = load_trained(build_network(cfg.MODEL, dataset), args.ckpt).to(device)
    figure = render_sample(model, sample, device, args.resolution, args.bev_z, args.slice_y)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=80)
    print(f'wrote {args.out}')
    return args.out


if __name__ == '__main__':
    run_main(main)
