"""Label efficiency of whole-network fine-tuning, from tools/det_probe.py output folders: one folder per label
fraction, the same settings otherwise. Per label fraction and budget (an evaluated iteration), mean ± std over
seeds of each arm, the gap against the seed spread, and one PNG: AP against labelled sweeps, pretrained vs scratch.

    python benchmarks/label_efficiency.py output/det_probe_ft/frac0.02 output/det_probe_ft/frac0.1 \
        --budgets 100 400 [--metrics bev_ap_0.5 bev_ap_0.7 dist_ap] [--png docs/label_efficiency.png] [--out T.md]

Each folder's runs (<dir>/runs/*.json) are summarised as `tools/det_probe.py --report_only` does.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tools.det_probe import ARMS, METRICS, gap, read_run, summarise  # noqa: E402

NAMES = {'bev_ap_0.7': 'BEV AP, IoU 0.7', 'bev_ap_0.5': 'BEV AP, IoU 0.5', '3d_ap_0.7': '3D AP, IoU 0.7',
         '3d_ap_0.5': '3D AP, IoU 0.5', 'dist_ap': 'centre-distance AP'}


def load(folders) -> list:
    """[(labelled sweeps, label fraction, summary, first run)] sorted by labelled sweeps; each folder must hold both
    arms, and the folders the same fine-tuning settings apart from the fraction."""
    found = []
    for folder in map(Path, folders):
        runs = [read_run(p) for p in sorted((folder / 'runs').glob('*_seed*.json'))]
        if not runs:
            raise SystemExit(f'{folder}: no runs in {folder / "runs"}')
        summary = summarise(runs)
        if set(summary) != set(ARMS):
            raise SystemExit(f'{folder}: runs of {sorted(summary)} only; both arms are needed')
        found.append((runs[0]['labelled_sweeps'], runs[0]['settings']['label_fraction'], summary, runs[0]))
    settings = [{k: v for k, v in first['settings'].items() if k != 'label_fraction'} for *_, first in found]
    if any(s != settings[0] for s in settings):
        raise SystemExit(f'the folders differ in more than the label fraction: {settings}')
    return sorted(found, key=lambda item: item[0])


def table(found, budgets, metrics) -> str:
    rows = ['| labelled sweeps | iterations | metric | ALSO pretrained | random init | gap | seed spread | '
            'gap > spread | pretrained ahead |', '|' + ' ---: |' * 2 + ' --- |' * 3 + ' ---: |' * 2 + ' --- | ---: |']
    for labelled, fraction, summary, _ in found:
        for budget in budgets:
            for metric in metrics:
                arms = [summary[arm]['at'][str(budget)][metric] for arm in ('pretrained', 'scratch')]
                g = gap(summary, budget, metric)
                rows.append(f"| {labelled} ({fraction:.0%}) | {budget} | {metric} | "
                            + ' | '.join(f"{a['mean']:.3f} ± {a['std']:.3f}" for a in arms)
                            + f" | {g['gap']:+.3f} | {g['spread']:.3f} | {'yes' if g['exceeds'] else 'no'}"
                            f" | {g['ahead']}/{g['paired']} |")
    return '\n'.join(rows) + '\n'


def plot(found, budgets, metrics, path: Path, title: str):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(budgets), len(metrics), figsize=(4.2 * len(metrics), 3.4 * len(budgets)),
                             squeeze=False)
    colours = {'pretrained': '#d95f02', 'scratch': '#7570b3'}
    labelled = np.array([item[0] for item in found], dtype=float)
    for row, budget in zip(axes, budgets):
        for ax, metric in zip(row, metrics):
            for k, arm in enumerate(('pretrained', 'scratch')):
                at = [summary[arm]['at'][str(budget)][metric] for _, _, summary, _ in found]
                x = labelled * (1.04 if k else 0.96)   # the arms side by side
                ax.errorbar(x, [a['mean'] for a in at], yerr=[a['std'] for a in at], marker='o', capsize=3,
                            color=colours[arm], label=f'{ARMS[arm]} (mean ± std)')
                for xi, a in zip(x, at):
                    ax.scatter([xi] * len(a['values']), a['values'], s=10, color=colours[arm], alpha=0.35)
            ax.set(title=f'{NAMES.get(metric, metric)}, {budget} iterations', xlabel='labelled sweeps',
                   xscale='log', ylim=(0, 1))
            ax.set_xticks(labelled, [f'{int(n)}' for n in labelled])
            ax.minorticks_off()
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('folders', nargs='+', help='tools/det_probe.py --out_dir folders, one per label fraction')
    p.add_argument('--budgets', type=int, nargs='+', required=True, help='evaluated iterations to report')
    p.add_argument('--metrics', nargs='+', choices=METRICS, default=['bev_ap_0.5', 'bev_ap_0.7', 'dist_ap'])
    p.add_argument('--png', default=None, help='write the picture here')
    p.add_argument('--out', default=None, help='also write the table here (Markdown)')
    args = p.parse_args(argv)
    found = load(args.folders)
    for labelled, _, summary, _ in found:
        for arm, entry in summary.items():
            missing = [b for b in args.budgets if str(b) not in entry['at']]
            if missing:
                p.error(f'--budgets {missing}: not evaluated in the {labelled}-sweep {arm} runs '
                        f'(evaluated: {entry["iterations"]})')
    first = found[0][3]
    seeds = sorted(set(found[0][2]['pretrained']['seeds']))
    title = (f"whole-network fine-tuning, {first['val_sweeps']} val sweeps ({first['val_cars']} cars), seeds "
             f"{', '.join(map(str, seeds))}, batch {first['settings']['batch_size']}, lr {first['settings']['lr']:g}")
    text = f'{title}\n\n{table(found, args.budgets, args.metrics)}'
    if args.png:
        plot(found, args.budgets, args.metrics, Path(args.png), title)
    if args.out:
        Path(args.out).write_text(text)
    print(text + (f'picture: {args.png}' if args.png else ''))
    return text


if __name__ == '__main__':
    main()
