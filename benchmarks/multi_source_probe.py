"""Multi-source against target-only ALSO pretraining, by the linear probe on the target layout (synthetic KITTI).

    python benchmarks/multi_source_probe.py [--data data/multi_source_bench] [--out output/multi_source_probe]
        [--seeds 0 1 2] [--iterations 48] [--max_sweeps 8] [--set KEY VALUE ...]

Both arms pretrain cfgs/also_pretrain_multi.yaml's model (`--set` applies to it, e.g. a smaller
DATA_CONFIG.POINT_CLOUD_RANGE) for the same `--iterations` steps of batch OPTIMIZATION.BATCH_SIZE_PER_GPU, one
epoch of DATA_CONFIG.SWEEPS_PER_EPOCH = iterations x batch draws, seeded by the seed: target-only on its `kitti`
source alone, multi-source on its kitti + waymo + nuscenes sources (their SHIFT_COOR and WEIGHTs). The probe
(engine/probe.py: 1 % of the points labelled, BatchNorm recalibrated) then runs on the KITTI sweeps with the same
seed, and once from a random backbone. Synthetic data is written under --data when absent (KITTI 40 sweeps, every
5th to val; Waymo two segments of 20 frames; nuScenes 24 sweeps). Writes <out>/results.json and prints a table.
"""
import argparse
import copy
import json
import logging
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from also_pcdet.config import cfg_from_list, cfg_from_yaml_file  # noqa: E402
from also_pcdet.datasets import build_dataloader  # noqa: E402
from also_pcdet.engine.optimization import build_optimizer  # noqa: E402
from also_pcdet.engine.probe import run_probe  # noqa: E402
from also_pcdet.engine.run_setup import seed_everything  # noqa: E402
from also_pcdet.engine.trainer import Trainer  # noqa: E402
from also_pcdet.models import build_network  # noqa: E402
from tools import make_synthetic  # noqa: E402

CFG = REPO / 'cfgs' / 'also_pretrain_multi.yaml'
# source NAME -> (make_synthetic layout, sweeps, seed, where the layout's index lives)
DATA = {'kitti': ('kitti_object', 40, 0, 'ImageSets/train.txt'),
        'waymo': ('waymo_processed', 40, 1, 'ImageSets/train.txt'),
        'nuscenes': ('nuscenes', 24, 2, 'v1.0-trainval')}
ENTRY_KEYS = {'nuscenes': {'INCLUDE_SWEEPS': True}}  # every lidar sweep, not only the key frames
ARMS = {'target-only': ('kitti',), 'multi-source': ('kitti', 'waymo', 'nuscenes')}


def ensure_data(root: Path) -> dict:
    """{source NAME: its synthetic root}, written under `root` when missing."""
    roots = {}
    for name, (layout, sweeps, seed, marker) in DATA.items():
        roots[name] = root / name
        if not (roots[name] / marker).exists():
            make_synthetic.main(['--out', str(roots[name]), '--layout', layout, '--num_sweeps', str(sweeps),
                                 '--seed', str(seed)])
    return roots


def arm_config(base, arm: str, roots: dict, iterations: int):
    """`base` with the arm's SOURCES (the shipped entries, DATA_PATH on the synthetic roots) and one epoch of
    `iterations` batches."""
    cfg = copy.deepcopy(base)
    entries = {entry['NAME']: entry for entry in cfg.DATA_CONFIG.SOURCES}
    cfg.DATA_CONFIG.SOURCES = [dict(entries[name], DATA_PATH=str(roots[name]), SAMPLE_INTERVAL={'train': 1, 'test': 1},
                                    **ENTRY_KEYS.get(name, {})) for name in ARMS[arm]]
    cfg.DATA_CONFIG.SWEEPS_PER_EPOCH = iterations * cfg.OPTIMIZATION.BATCH_SIZE_PER_GPU
    return cfg


def pretrain(cfg, seed: int, out_dir: Path) -> Path:
    """One epoch of `cfg` on the CPU from `seed`; returns its checkpoint."""
    seed_everything(seed, deterministic=True)
    dataset, loader = build_dataloader(cfg.DATA_CONFIG, cfg.OPTIMIZATION.BATCH_SIZE_PER_GPU, 0, training=True,
                                       seed=seed)
    model = build_network(cfg.MODEL, dataset)
    trainer = Trainer(model, build_optimizer(model, cfg.OPTIMIZATION), loader, cfg.OPTIMIZATION, ckpt_dir=out_dir,
                      device=torch.device('cpu'), seed=seed, max_ckpt_save_num=1, log_iterations=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer.fit(1)
    return out_dir / 'checkpoint_epoch_1.pth'


def summary(values) -> str:
    return f'{statistics.mean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.3f}'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data', default='data/multi_source_bench', help='synthetic roots (written when absent)')
    p.add_argument('--out', default='output/multi_source_probe')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--iterations', type=int, default=48)
    p.add_argument('--max_sweeps', type=int, default=8, help='probe: train and val sweeps used')
    p.add_argument('--set', dest='set_cfgs', nargs=argparse.REMAINDER, default=[], help='KEY VALUE ... (last)')
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s')
    start, out = time.time(), Path(args.out)
    roots = ensure_data(Path(args.data))
    base = cfg_from_list(args.set_cfgs, cfg_from_yaml_file(CFG))
    probe_data = copy.deepcopy(base.DATA_CONFIG)
    probe_data.pop('SOURCES')
    probe_data.update(DATA_PATH=str(roots['kitti']), SAMPLE_INTERVAL={'train': 1, 'test': 1})
    options = dict(fraction=0.01, steps=300, max_sweeps=args.max_sweeps)
    rows = {arm: [] for arm in ARMS}
    rows['random init'] = []
    for seed in args.seeds:
        for arm in ARMS:
            began = time.time()
            ckpt = pretrain(arm_config(base, arm, roots, args.iterations), seed, out / arm / f'seed{seed}')
            trained = time.time()
            miou = run_probe(base.MODEL, probe_data, ckpt, seed=seed, **options)['miou']
            rows[arm].append({'seed': seed, 'miou': miou, 'pretrain_s': trained - began,
                              'probe_s': time.time() - trained})
            logging.info(f'{arm} seed {seed}: probe mIoU {miou:.3f} ({rows[arm][-1]})')
        rows['random init'].append({'seed': seed, 'miou': run_probe(base.MODEL, probe_data, None, seed=seed,
                                                                    **options)['miou']})
        (out / 'results.json').write_text(json.dumps({'args': vars(args), 'rows': rows,
                                                      'minutes': (time.time() - start) / 60}, indent=1))
    print('| backbone | seeds | probe mIoU (mean ± std) | per seed |\n| --- | --- | --- | --- |')
    for arm, results in rows.items():
        per_seed = ' / '.join(f'{row["miou"]:.3f}' for row in results)
        print(f'| {arm} | {len(results)} | {summary([row["miou"] for row in results])} | {per_seed} |')
    print(f'{(time.time() - start) / 60:.1f} min')
    return rows


if __name__ == '__main__':
    main()
