"""Where the ALSO queries of a KITTI sweep land, three ways, on synthetic ray-cast KITTI sweeps (SECOND range
[0, -40, -3, 70.4, 40, 1], 4096 queries, 0.05 m decimation, no augmentation):
- official: ALSO's own order (benchmarks/reference_queries.py): decimate the whole 360-degree sweep, cap it
  at 80,000 points, draw the queries from every hit, then crop the queries to the range;
- crop first: this project before (crop the hits to the range, decimate, draw; every query kept);
- every ray: this project now (`SweepDataset`: queries from every decimated hit whose ray can reach the range,
  only in-range ones kept, topped up to 4096).
Prints, per way: queries kept per sweep, the share of them inside the range, the share of kept queries whose
source hit lies outside the range, and the height (z) and horizontal distance histograms of the kept queries;
writes the histograms to a PNG. Asserts nothing. Record results in benchmarks/RESULTS.md.

    python benchmarks/query_coverage.py [--sweeps 12] [--png docs/query_coverage.png]
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / 'benchmarks')]

import reference_queries  # noqa: E402

from also_pcdet.config import cfg_from_list, cfg_from_yaml_file  # noqa: E402
from also_pcdet.datasets import SweepDataset  # noqa: E402
from also_pcdet.datasets.queries import decimate, sample_queries  # noqa: E402
from also_pcdet.datasets.sweep_checks import inside_range  # noqa: E402
from tools import make_synthetic  # noqa: E402

OFFICIAL_CAP = 80_000
HEIGHT_BINS = np.arange(-3.0, 1.01, 0.5)
DISTANCE_BINS = np.arange(0.0, 81.0, 10.0)
WAYS = ('official', 'crop first', 'every ray')


def official(points, cfg, rng):
    """ALSO's order on one sweep: (queries inside the range, their source hits, queries drawn)."""
    q = cfg.QUERIES
    kept = reference_queries.decimate(points[:, :3], q.DECIMATION_CELL, rng)
    if len(kept) > OFFICIAL_CAP:
        kept = kept[np.sort(rng.choice(len(kept), OFFICIAL_CAP, replace=False))]
    hits = points[kept]
    queries = reference_queries.sample_queries(hits[:, :3], hits[:, 3], np.zeros(3), q.NUM_QUERIES, q.BAND, rng)
    inside = inside_range(queries['xyz'], cfg.POINT_CLOUD_RANGE)
    return queries['xyz'][inside], hits[queries['source'][inside], :3], len(inside)


def crop_first(points, cfg, rng):
    """This project before: crop the hits to the range, decimate them, draw from them, keep every query."""
    q = cfg.QUERIES
    hits = points[inside_range(points[:, :3], cfg.POINT_CLOUD_RANGE)]
    hits = hits[decimate(hits[:, :3], q.DECIMATION_CELL, rng)]
    queries = sample_queries(hits[:, :3], hits[:, 3], np.zeros(3), q.NUM_QUERIES, q.BAND, rng)
    return queries['xyz'], hits[queries['source'], :3], len(queries['xyz'])


def every_ray(dataset, points, index):
    sample = dataset.prepare(points, np.zeros(3), str(index), index)
    return sample['queries'], sample['query_hits'], len(sample['queries'])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sweeps', type=int, default=12)
    p.add_argument('--png', default=str(REPO / 'docs' / 'query_coverage.png'))
    args = p.parse_args(argv)
    print(f'{time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}  {os.cpu_count()} CPU cores, load average '
          f'{os.getloadavg()[0]:.1f}')
    with tempfile.TemporaryDirectory() as tmp:
        make_synthetic.main(['--out', tmp, '--layout', 'kitti_object', '--seed', '0',
                             '--num_sweeps', str(args.sweeps)])
        cfg = cfg_from_yaml_file(REPO / 'cfgs' / 'also_pretrain.yaml')
        cfg_from_list(['DATA_CONFIG.DATA_PATH', tmp, 'DATA_CONFIG.DATA_SPLIT.test', 'train'], cfg)
        dataset = SweepDataset(cfg.DATA_CONFIG, training=False, seed=0)
        data_cfg, box = cfg.DATA_CONFIG, np.asarray(cfg.DATA_CONFIG.POINT_CLOUD_RANGE, np.float32)
        data_cfg.POINT_CLOUD_RANGE = box
        stats = {way: {'kept': [], 'drawn': [], 'hit_out': [], 'above': [], 'z': [], 'd': []} for way in WAYS}
        for i in range(len(dataset.source)):
            points, _ = dataset.source.read(i)
            for way in WAYS:
                rng = np.random.default_rng([0, i])
                queries, hits, drawn = (every_ray(dataset, points, i) if way == 'every ray' else
                                        (official if way == 'official' else crop_first)(points, data_cfg, rng))
                inside = inside_range(queries, box)
                s = stats[way]
                s['drawn'].append(drawn)
                s['kept'].append(int(inside.sum()))
                s['hit_out'].append(float((~inside_range(hits[inside], box)).mean()))
                s['above'].append(float((queries[inside, 2] > 0).mean()))
                s['z'].append(queries[inside, 2])
                s['d'].append(np.linalg.norm(queries[inside, :2], axis=1))
    n = len(stats['official']['kept'])
    print(f'\nQueries of {n} synthetic KITTI sweeps (4096 drawn per sweep; kept = inside POINT_CLOUD_RANGE)')
    print('| way | queries drawn / sweep | kept in range / sweep | kept share | kept from out-of-range hits | '
          'kept above the sensor (z > 0) |')
    print('| --- | ---: | ---: | ---: | ---: | ---: |')
    for way, s in stats.items():
        print(f'| {way} | {np.mean(s["drawn"]):,.0f} | {np.mean(s["kept"]):,.0f} | '
              f'{np.sum(s["kept"]) / np.sum(s["drawn"]):.1%} | {np.mean(s["hit_out"]):.2%} | '
              f'{np.mean(s["above"]):.2%} |')
    for key, bins, name in (('z', HEIGHT_BINS, 'height z (m)'), ('d', DISTANCE_BINS, 'horizontal distance (m)')):
        counts = {way: np.histogram(np.concatenate(s[key]), bins)[0] / n for way, s in stats.items()}
        print(f'\nKept queries per sweep by {name} (share of the kept queries)')
        print('| bin | ' + ' | '.join(WAYS) + ' |')
        print('| --- |' + ' ---: |' * len(WAYS))
        for b, (low, high) in enumerate(zip(bins[:-1], bins[1:])):
            print(f'| [{low:g}, {high:g}) | ' + ' | '.join(
                f'{counts[way][b]:,.0f} ({counts[way][b] / counts[way].sum():.1%})' for way in WAYS) + ' |')
    plot(stats, args.png)
    print(f'\nhistograms written to {args.png}; load average at the end {os.getloadavg()[0]:.1f}')


def plot(stats, png):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for axis, key, bins, label in ((axes[0], 'z', np.arange(-3.0, 1.01, 0.25), 'query height z (m); sensor at 0'),
                                   (axes[1], 'd', np.arange(0.0, 81.0, 2.5), 'query horizontal distance (m)')):
        for way, s in stats.items():
            counts = np.histogram(np.concatenate(s[key]), bins)[0]
            axis.step(bins[:-1], counts / counts.sum(), where='post', label=way)
        axis.set_xlabel(label)
        axis.set_ylabel('share of the kept queries')
        axis.set_yscale('log')
    axes[0].legend()
    fig.suptitle('ALSO queries kept inside the KITTI range, synthetic sweeps')
    fig.tight_layout()
    fig.savefig(png, dpi=90)


if __name__ == '__main__':
    main()
