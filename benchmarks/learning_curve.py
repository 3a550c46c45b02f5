"""The pretext's learning curve: ALSO pretraining on regenerable synthetic KITTI sweeps, evaluated on the held-out
(val) sweeps after every epoch, next to the trivial predictor that answers "empty" everywhere.

    python benchmarks/learning_curve.py --cfg_file cfgs/also_pretrain_demo.yaml [--out output/learning_curve]
        [--data data/learning_curve_kitti] [--detector_cfg cfgs/detector_cfgs/kitti_pointpillar.yaml]
        [--sweeps 100] [--epochs 20] [--minutes 30] [--workers 1] [--set KEY VALUE ...]

The sweeps are written by tools/make_synthetic.py (seed 0, every 5th to val) when `--data` holds none. Training is
`Trainer.fit`, the evaluation `engine.evaluation.evaluate` on every val sweep (SAMPLE_INTERVAL.test 1), once before
the first step and after each epoch; the report is rewritten after each. The trivial predictor is evaluated on the
same (query, latent) pairs: occupancy "empty", intensity the median intensity target of the first training sweeps.
Each evaluation also splits the accuracy by query kind (`acc_in`, `acc_out_near`, `acc_out_far`): the trivial
predictor is right on every "out" pair and wrong on every "in" pair, so only the in / out-near separation can beat it.
Writes <out>/curve.json, curve.md (the table) and curve.png (`--png` also copies it elsewhere).
"""
import argparse
import json
import math
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from also_pcdet.config import add_config_arguments, cfg_from_list, config_from_args  # noqa: E402
from also_pcdet.datasets import build_dataloader  # noqa: E402
from also_pcdet.engine.checkpoint import unwrap  # noqa: E402
from also_pcdet.engine.evaluation import evaluate  # noqa: E402
from also_pcdet.engine.optimization import build_optimizer  # noqa: E402
from also_pcdet.engine.trainer import Trainer  # noqa: E402
from also_pcdet.models import build_network  # noqa: E402
from tools import make_synthetic  # noqa: E402

KINDS = ('acc_in', 'acc_out_near', 'acc_out_far')
METRICS = ('occ_miou', 'occ_iou_occupied', 'occ_precision', 'occ_recall', 'occ_acc') + KINDS + ('intensity_l1',)


class TrivialPredictor(nn.Module):
    """`model`'s eval output with every pair predicted empty and intensity `intensity`: the same pairs, loss ignored."""

    def __init__(self, model, intensity: float):
        super().__init__()
        self.model, self.intensity = model, float(intensity)

    def forward(self, batch):
        pred, metric_dict = self.model(batch)
        logits = torch.full_like(pred['occupancy_logits'], -1.0)
        return dict(pred, occupancy_logits=logits, intensity=torch.full_like(pred['intensity'], self.intensity)), \
            metric_dict


def median_intensity(dataset, sweeps: int = 8) -> float:
    """The median intensity target of the queries of the first `sweeps` training sweeps (the L1-best constant)."""
    values = [sample['query_intensity'][sample['query_intensity_mask'] > 0.5]
              for sample in (dataset[i] for i in range(min(sweeps, len(dataset))))]
    return float(np.median(np.concatenate(values)))


def pair_kinds(target: torch.Tensor, intensity_mask: torch.Tensor) -> torch.Tensor:
    """Query kind of each pair (0 in, 1 out-near, 2 out-far, as datasets/queries.py) from its labels: "in" is
    occupied, out-near empty with an intensity target, out-far empty without one. Needs a source with intensity
    (else every empty pair reads as out-far)."""
    return torch.where(target > 0.5, 0, torch.where(intensity_mask, 1, 2))


class KindAccuracy:
    """Counts correct pairs per query kind at every eval forward of `head` (a forward hook) while active."""

    def __init__(self, head):
        self.head, self.correct, self.total = head, torch.zeros(3), torch.zeros(3)

    def __enter__(self):
        self.handle = self.head.register_forward_hook(self.count)
        return self

    def __exit__(self, *exc):
        self.handle.remove()

    def count(self, head, inputs, output):
        if head.training:
            return
        ret = head.forward_ret_dict
        kinds = pair_kinds(ret['occupancy_target'], ret['intensity_mask'])
        right = ((ret['occupancy_logits'] > 0) == (ret['occupancy_target'] > 0.5)).float()
        self.correct += torch.zeros(3).index_add_(0, kinds.cpu(), right.cpu())
        self.total += torch.bincount(kinds.cpu(), minlength=3).float()

    def metrics(self) -> dict:
        return {key: float(c / t) if t else math.nan for key, c, t in zip(KINDS, self.correct, self.total)}


class CurveTrainer(Trainer):
    """Trainer whose per-epoch validation also records (iteration, training seconds so far, metrics)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.curve, self.eval_seconds, self.started = [], 0.0, time.perf_counter()

    def validate(self) -> dict:
        start = time.perf_counter()
        train_seconds = start - self.started - self.eval_seconds
        with KindAccuracy(unwrap(self.model).dense_head) as kinds:
            metrics = dict(super().validate())
        metrics.update(kinds.metrics())
        self.eval_seconds += time.perf_counter() - start
        self.curve.append({'iteration': self.it, 'train_seconds': train_seconds,
                           'lr': self.optimizer.param_groups[0]['lr'], **metrics})
        return metrics


def ensure_sweeps(root: Path, sweeps: int, seed: int = 0):
    """Write `sweeps` synthetic KITTI sweeps under `root` unless its ImageSets are there."""
    if not (root / 'ImageSets' / 'train.txt').is_file():
        make_synthetic.main(['--out', str(root), '--num_sweeps', str(sweeps), '--seed', str(seed)])


def run_curve(cfg, out_dir: Path, epochs: int, workers: int = 0, seed: int = 0, device='cpu', minutes: float = None,
              report=None) -> dict:
    """Train up to `epochs` epochs with `cfg` (fewer when `minutes` have passed at an epoch's end), evaluating before
    and after each; after each evaluation `report(result)` if given. Returns {'rows', 'trivial', ...}."""
    device, deadline = torch.device(device), time.perf_counter() + 60 * minutes if minutes else math.inf
    cfg_from_list(['DATA_CONFIG.SAMPLE_INTERVAL.test', '1'], cfg)
    batch = cfg.OPTIMIZATION.BATCH_SIZE_PER_GPU
    dataset, loader = build_dataloader(cfg.DATA_CONFIG, batch, workers, training=True, seed=seed)
    val_set, val_loader = build_dataloader(cfg.DATA_CONFIG, batch, workers, training=False, seed=seed)
    torch.manual_seed(seed)
    model = build_network(cfg.MODEL, dataset).to(device)
    trivial = evaluate(TrivialPredictor(model, median_intensity(dataset)), val_loader, device)
    trivial.update(acc_in=0.0, acc_out_near=1.0, acc_out_far=1.0)   # "empty" is right on exactly the out pairs
    trainer = CurveTrainer(model, build_optimizer(model, cfg.OPTIMIZATION), loader, cfg.OPTIMIZATION,
                           ckpt_dir=out_dir / 'ckpt', device=device, seed=seed, max_ckpt_save_num=1,
                           val_loader=val_loader, eval_interval=1)
    (out_dir / 'ckpt').mkdir(parents=True, exist_ok=True)
    result = {'rows': trainer.curve, 'train_sweeps': len(dataset), 'val_sweeps': len(val_set), 'batch': batch,
              'threads': torch.get_num_threads(), 'epochs_asked': epochs, 'trivial': trivial}
    trainer.validate()
    for epoch in range(epochs):   # one epoch per fit, so the run can stop at the deadline; the LR spans `epochs`
        trainer.fit(epoch + 1, schedule_epochs=epochs)
        result.update(s_per_iteration=trainer.curve[-1]['train_seconds'] / trainer.it,
                      checkpoint=str(out_dir / 'ckpt' / f'checkpoint_epoch_{epoch + 1}.pth'))
        if report is not None:
            report(result)
        if time.perf_counter() > deadline:
            break
    return result


def markdown(result: dict) -> str:
    header = '| iteration | ' + ' | '.join(METRICS) + ' |\n|' + ' ---: |' * (len(METRICS) + 1) + '\n'
    rows = [f"| {row['iteration']} | " + ' | '.join(f'{row[m]:.3f}' for m in METRICS) + ' |' for row in result['rows']]
    trivial = '| trivial ("all empty") | ' + ' | '.join(f"{result['trivial'][m]:.3f}" for m in METRICS) + ' |'
    return header + '\n'.join(rows + [trivial]) + '\n'


def plot(result: dict, path: Path, title: str):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    panels = (('occ_miou', 'occupancy mIoU'), ('occ_iou_occupied', 'occupied-class IoU'),
              (('occ_precision', 'occ_recall'), 'occupied precision / recall'), (KINDS, 'accuracy by query kind'),
              ('intensity_l1', 'intensity L1'))
    its = [row['iteration'] for row in result['rows']]
    fig, axes = plt.subplots(1, len(panels), figsize=(21, 3.8))
    for ax, (keys, name) in zip(axes, panels):
        for key, style in zip((keys,) if isinstance(keys, str) else keys, ('-', '--', '-.')):
            line, = ax.plot(its, [row[key] for row in result['rows']], style, marker='o', ms=3, label=key)
            if keys is not KINDS:   # the trivial predictor's kind accuracies are 0 and 1 by construction
                ax.axhline(result['trivial'][key], color=line.get_color(), ls=':', label=f'{key}, "all empty"')
        ax.set(title=name, xlabel='iteration')
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(p, 'YAML config, e.g. cfgs/also_pretrain_demo.yaml')
    p.add_argument('--data', default='data/learning_curve_kitti', help='synthetic KITTI root (written if absent)')
    p.add_argument('--sweeps', type=int, default=100, help='sweeps to write when --data has none (1 in 5 val)')
    p.add_argument('--epochs', type=int, default=20)
    p.add_argument('--minutes', type=float, default=None, help='stop after the epoch that ends past this budget')
    p.add_argument('--workers', type=int, default=1)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default='output/learning_curve')
    p.add_argument('--png', default=None, help='also copy the picture here (e.g. docs/learning_curve.png)')
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s')
    if 'OMP_NUM_THREADS' not in os.environ:   # as tools/train.py (loaded 2 cores: 2 threads ~17 s a step, 1: 0.65)
        torch.set_num_threads(1)
    if args.epochs < 1 or args.sweeps < 10:
        p.error('--epochs must be at least 1 and --sweeps at least 10')
    ensure_sweeps(Path(args.data), args.sweeps, args.seed)
    cfg = config_from_args(args)
    cfg_from_list(['DATA_CONFIG.DATA_PATH', str(args.data)], cfg)
    out, start = Path(args.out), time.time()
    command = ' '.join(['python benchmarks/learning_curve.py', *(argv or sys.argv[1:])])
    box = cfg.DATA_CONFIG.POINT_CLOUD_RANGE
    setting = (f"box {box[3] - box[0]:g} x {box[4] - box[1]:g} m, {cfg.DATA_CONFIG.QUERIES.NUM_QUERIES} queries a sweep, "
               f"{cfg.OPTIMIZATION.get('LR_SCHEDULE', 'constant')} LR {cfg.OPTIMIZATION.LR:g}")

    def report(result):
        result.update(command=command, minutes=(time.time() - start) / 60)
        (out / 'curve.json').write_text(json.dumps(result, indent=1))
        title = (f"{Path(args.cfg_file).name}{' + ' + Path(args.detector_cfg).name if args.detector_cfg else ''}: "
                 f"{result['train_sweeps']} train / {result['val_sweeps']} val synthetic sweeps, {setting}, batch "
                 f"{result['batch']}, {result['s_per_iteration']:.2f} s/iteration on {result['threads']} CPU thread(s)")
        plot(result, out / 'curve.png', title)
        if args.png:
            shutil.copyfile(out / 'curve.png', args.png)
        (out / 'curve.md').write_text(f'{title}\n\n{markdown(result)}')
        print(f'{title}\n\n{markdown(result)}\n{result["minutes"]:.1f} min; {out / "curve.png"}', flush=True)

    return run_curve(cfg, out, args.epochs, args.workers, args.seed, minutes=args.minutes, report=report)


if __name__ == '__main__':
    main()
