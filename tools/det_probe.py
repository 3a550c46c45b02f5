"""Few-label detection probe: pretrained vs randomly initialised backbone, same head, schedule and seeds.
Car BEV / 3D AP (R40, IoU 0.7 and 0.5) and centre-distance AP on the val sweeps, mean +- std over seeds,
learning curves as a PNG. Needs KITTI labels (training/label_2, calib): tools/make_synthetic.py writes them.

    python tools/det_probe.py --cfg_file cfgs/also_pretrain_demo.yaml --ckpt .../pretrained_backbone.pth \
        --label_fraction 0.05 [--seeds 0 1 2] [--iterations 300] [--finetune head|all] [--arms pretrained scratch]
        [--budgets 100]

Each run (arm, seed) is written to <out_dir>/runs/<arm>_seed<N>.json as it finishes and skipped when it is
already there, so an interrupted measurement resumes, and two processes can run the two arms side by side;
the report (summary.json, curves.png, table.md: mean ± std at the last iteration and at each of --budgets, and the
gap between the arms against the seed spread) covers every run in <out_dir>/runs. benchmarks/label_efficiency.py
puts several label fractions side by side.
"""
import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch

from also_pcdet.config import add_config_arguments, config_from_args
from also_pcdet.engine.cli import run_main
from also_pcdet.engine.detection_probe import run_detection_probe
from also_pcdet.engine.run_setup import summary_writer
from also_pcdet.errors import RunError

ARMS = {'pretrained': 'ALSO pretrained', 'scratch': 'random init'}
METRICS = ('bev_ap_0.7', '3d_ap_0.7', 'bev_ap_0.5', '3d_ap_0.5', 'dist_ap')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(p)
    p.add_argument('--ckpt', help='ALSO checkpoint or exported pretrained_backbone.pth (needed by the pretrained arm)')
    p.add_argument('--label_fraction', type=float, default=0.05, help='share of the training sweeps labelled')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--arms', nargs='+', choices=sorted(ARMS), default=['pretrained', 'scratch'])
    p.add_argument('--iterations', type=int, default=300)
    p.add_argument('--eval_every', type=int, default=50)
    p.add_argument('--batch_size', type=int, default=2)
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--finetune', choices=['all', 'head'], default='all',
                   help='all: fine-tune backbone + head; head: frozen backbone (BatchNorm recalibrated), cached BEV maps')
    p.add_argument('--bn_sweeps', type=int, default=4, help='finetune=head: unlabelled training sweeps added to the BN recalibration')
    p.add_argument('--max_val', type=int, default=None, help='use at most this many val sweeps')
    p.add_argument('--out_dir', default=None, help='default output/det_probe/<cfg name>')
    p.add_argument('--budgets', type=int, nargs='+', default=[],
                   help='also report these evaluated iterations as shorter fine-tuning budgets (the LR is constant and '
                        'each iteration draws its own batch, so iteration N of a longer run is an N-iteration run)')
    p.add_argument('--report_only', action='store_true', help='only summarise the runs already in out_dir')
    args = p.parse_args(argv)
    for name in ('iterations', 'eval_every', 'batch_size'):
        if getattr(args, name) < 1:
            p.error(f'--{name} must be at least 1')
    for budget in args.budgets:
        if budget % args.eval_every or not 0 < budget <= args.iterations:
            p.error(f'--budgets {budget}: not an evaluated iteration (a multiple of --eval_every up to --iterations)')
    if not 0 < args.label_fraction <= 1:
        p.error('--label_fraction must be in (0, 1]')
    if 'pretrained' in args.arms and not args.report_only:
        if not args.ckpt:
            p.error('--ckpt is needed for the pretrained arm')
        if not Path(args.ckpt).is_file():
            p.error(f'--ckpt {args.ckpt}: file not found')
    return args


def read_run(path: Path) -> dict:
    """A finished run's JSON; a damaged one is a RunError naming it (deleting it runs that arm and seed again)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise RunError(f'{path}: cannot read this finished run ({err}); delete it to run it again') from err


def write_json(path: Path, data):
    tmp = path.with_suffix('.tmp')
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def summarise(runs: list) -> dict:
    """Per arm: seeds, and per evaluated iteration (`at`; `final` is the last) the mean / std (sample, ddof 1) and
    per-seed values of each metric; the learning curve's mean / std."""
    summary = {}
    for arm in ARMS:
        mine = sorted((r for r in runs if r['arm'] == arm), key=lambda r: r['seed'])
        if not mine:
            continue
        iterations = sorted({int(i) for r in mine for i in r['curve']})
        entry = {'seeds': [r['seed'] for r in mine], 'iterations': iterations, 'at': {}, 'curve': {},
                 'seconds': float(np.mean([r['seconds'] for r in mine]))}
        for metric in METRICS:
            per_it = np.array([[r['curve'].get(str(i), {}).get(metric, np.nan) for i in iterations] for r in mine],
                              dtype=np.float64)
            for column, it in zip(per_it.T, iterations):
                entry['at'].setdefault(str(it), {})[metric] = {
                    'mean': float(column.mean()), 'std': float(column.std(ddof=1)) if len(column) > 1 else 0.0,
                    'values': column.tolist()}
            entry['curve'][metric] = {'mean': np.nanmean(per_it, 0).tolist(),
                                      'std': (np.nanstd(per_it, 0, ddof=1) if len(mine) > 1 else 0 * per_it[0]).tolist()}
        entry['final'] = entry['at'][str(iterations[-1])]
        summary[arm] = entry
    return summary


def markdown_table(summary: dict, iteration: int = None) -> str:
    """Mean ± std over seeds at `iteration` (default: the last)."""
    header = '| backbone | seeds | ' + ' | '.join(METRICS) + ' |\n|' + ' --- |' * (len(METRICS) + 2) + '\n'
    rows = []
    for arm, entry in summary.items():
        at = entry['final'] if iteration is None else entry['at'][str(iteration)]
        cells = [f"{at[m]['mean']:.3f} ± {at[m]['std']:.3f}" for m in METRICS]
        rows.append(f"| {ARMS[arm]} | {len(entry['seeds'])} | " + ' | '.join(cells) + ' |')
    return header + '\n'.join(rows) + '\n'


def gap(summary: dict, iteration: int, metric: str) -> dict:
    """Pretrained minus scratch at `iteration` (means), the seed spread (the larger sample std of the two arms),
    whether the gap exceeds it, and the seeds on which pretrained is ahead (the arms share each seed's labelled
    sweeps and batches)."""
    pre, scr = (summary[arm]['at'][str(iteration)][metric] for arm in ('pretrained', 'scratch'))
    seeds = dict(zip(summary['scratch']['seeds'], scr['values']))
    pairs = [(value, seeds[seed]) for seed, value in zip(summary['pretrained']['seeds'], pre['values']) if seed in seeds]
    difference, spread = pre['mean'] - scr['mean'], max(pre['std'], scr['std'])
    return {'gap': difference, 'spread': spread, 'exceeds': abs(difference) > spread,
            'ahead': sum(p > s for p, s in pairs), 'paired': len(pairs)}


def gap_lines(summary: dict, iteration: int) -> list:
    """One line per metric: the gap, whether it exceeds the seed spread, and on how many seeds pretrained is ahead."""
    if not {'pretrained', 'scratch'} <= set(summary):
        return []
    lines = []
    for metric in METRICS:
        g = gap(summary, iteration, metric)
        lines.append(f"- {metric}: gap {g['gap']:+.3f}, seed spread {g['spread']:.3f}: "
                     f"{'exceeds' if g['exceeds'] else 'within'} the spread; pretrained ahead on "
                     f"{g['ahead']}/{g['paired']} seeds")
    return lines


def plot_curves(runs: list, summary: dict, path: Path, title: str):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    colours = {'pretrained': '#d95f02', 'scratch': '#7570b3'}
    for arm, entry in summary.items():
        losses = np.array([r['loss'] for r in runs if r['arm'] == arm])
        window = max(1, losses.shape[1] // 30)
        smooth = np.array([np.convolve(l, np.ones(window) / window, mode='valid') for l in losses])
        steps = np.arange(smooth.shape[1]) + window
        axes[0].plot(steps, smooth.mean(0), color=colours[arm], label=ARMS[arm])
        axes[0].fill_between(steps, smooth.min(0), smooth.max(0), color=colours[arm], alpha=0.2)
        for ax, metric in zip(axes[1:], ('bev_ap_0.7', 'bev_ap_0.5', 'dist_ap')):
            mean, std = np.array(entry['curve'][metric]['mean']), np.array(entry['curve'][metric]['std'])
            ax.plot(entry['iterations'], mean, marker='o', color=colours[arm], label=ARMS[arm])
            ax.fill_between(entry['iterations'], mean - std, mean + std, color=colours[arm], alpha=0.2)
    axes[0].set(title='training loss (mean, min-max over seeds)', xlabel='iteration', yscale='log')
    for ax, name in zip(axes[1:], ('car BEV AP R40, IoU 0.7', 'car BEV AP R40, IoU 0.5', 'car centre-distance AP')):
        ax.set(title=f'{name} (mean ± std)', xlabel='iteration', ylim=(0, 1))
    axes[0].legend()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    cfg = config_from_args(args)
    out_dir = Path(args.out_dir or Path('output') / 'det_probe' / Path(args.cfg_file).stem)
    (out_dir / 'runs').mkdir(parents=True, exist_ok=True)
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    settings = {key: getattr(args, key) for key in ('label_fraction', 'iterations', 'eval_every', 'batch_size', 'lr',
                                                    'finetune', 'bn_sweeps', 'max_val')}
    if not args.report_only:
        writer = summary_writer(out_dir / 'tensorboard')
        for seed in args.seeds:
            for arm in args.arms:
                path = out_dir / 'runs' / f'{arm}_seed{seed}.json'
                if path.is_file():
                    print(f'{path} exists: skipped')
                    continue
                result = run_detection_probe(
                    cfg.MODEL, cfg.DATA_CONFIG, args.ckpt if arm == 'pretrained' else None, seed=seed, device=device,
                    label_fraction=args.label_fraction, iterations=args.iterations, eval_every=args.eval_every,
                    batch_size=args.batch_size, lr=args.lr, finetune=args.finetune, bn_sweeps=args.bn_sweeps,
                    max_val=args.max_val, writer=writer, tag=f'{arm}_seed{seed}')
                result['curve'] = {str(k): v for k, v in result['curve'].items()}
                write_json(path, dict(result, arm=arm, seed=seed, ckpt=args.ckpt if arm == 'pretrained' else None,
                                      settings=settings))
                final = result['final']
                print(f'{ARMS[arm]:<16} seed {seed}: ' + ', '.join(f'{k} {v:.3f}' for k, v in final.items())
                      + f' ({result["seconds"] / 60:.1f} min)', flush=True)
        writer.close()

    runs = [read_run(p) for p in sorted((out_dir / 'runs').glob('*_seed*.json'))]
    if not runs:
        raise SystemExit(f'no runs in {out_dir / "runs"}')
    summary = summarise(runs)
    write_json(out_dir / 'summary.json', {'settings': runs[0]['settings'], 'labelled_sweeps': runs[0]['labelled_sweeps'],
                                          'val_sweeps': runs[0]['val_sweeps'], 'val_cars': runs[0]['val_cars'],
                                          'arms': summary})
    first = runs[0]
    title = (f"{first['settings']['finetune']} fine-tuning, {first['labelled_sweeps']} labelled sweeps, "
             f"{first['val_sweeps']} val sweeps ({first['val_cars']} cars), {first['settings']['iterations']} iterations")
    plot_curves(runs, summary, out_dir / 'curves.png', title)
    report = ''
    for iteration in sorted(set(args.budgets) | {first['settings']['iterations']}):
        if all(str(iteration) in entry['at'] for entry in summary.values()):
            report += (f'\nafter {iteration} iterations:\n\n{markdown_table(summary, iteration)}\n'
                       + ''.join(line + '\n' for line in gap_lines(summary, iteration)))
    (out_dir / 'table.md').write_text(f'{title}\n{report}')
    print(f'{title}\n{report}\ncurves: {out_dir / "curves.png"}')
    return summary


if __name__ == '__main__':
    run_main(main)
