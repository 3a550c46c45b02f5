"""Read every configured sweep once and print what a long run would get: the number of sweeps, points per
sweep (min / median / max, all and inside POINT_CLOUD_RANGE), per lidar where a sweep has several (Waymo),
and every unusable file with its reason.

    python tools/scan_dataset.py --cfg_file cfgs/also_pretrain_kitti_raw.yaml [--split train] [--workers 4] \
        [--set DATA_CONFIG.DATA_PATH /data/kitti_raw ...]

Any layout DATA_CONFIG.DATASET names (KITTI object / raw / 360, SemanticKITTI, nuScenes, ONCE, Waymo) is read
by its own reader. Sweeps are those training reads (DATA_SPLIT and SAMPLE_INTERVAL of the split), without augmentation.
What the split names but gives no sweep (an empty folder, window frames a drive lacks) is counted and listed too.

Exit status, for pipelines that gate a training run on it:
  0  usable sweeps, and at most DATA_CONFIG.MAX_BAD_FRACTION of them unusable
  1  more than MAX_BAD_FRACTION unusable, or the data cannot be scanned (a config error, a listed folder or
     list file missing: one line names it)
  2  bad command line
  3  nothing usable: no sweep listed, or none readable
"""
import argparse
import multiprocessing
import os

import numpy as np
from tqdm import tqdm

from also_pcdet.config import add_config_arguments, config_from_args
from also_pcdet.config_checks import check_config
from also_pcdet.datasets.loader import die_with_parent
from also_pcdet.datasets.multi_source import shift_sweep, source_configs
from also_pcdet.datasets.ray_origins import RayOrigins
from also_pcdet.datasets.readers import SweepError
from also_pcdet.datasets.sources import build_source
from also_pcdet.datasets.sweep_checks import check_sweep
from also_pcdet.engine.cli import run_main

_WORKER = {}
NOTHING_USABLE = 3


def scan_sweep(source, grid, index):
    """(location, points, points inside the range, reason or None, points per ray origin) of one sweep, with
    training's verdict. Points per ray origin: None for a one-origin sweep, else (names, counts) with a count
    per origin table row (e.g. per Waymo lidar) and last the points of unknown origin (input only). `grid`:
    (POINT_CLOUD_RANGE, VOXEL_SIZE, SHIFT_COOR of a multi-source entry or None)."""
    location = source.location(index)
    pc_range, voxel_size, shift = grid
    try:
        points, origin = source.read(index)
        if shift is not None:
            points, origin = shift_sweep(points, origin, shift)
        inside = check_sweep(points, origin, location, source, pc_range, voxel_size)
    except SweepError as err:
        return location, 0, 0, err.reason, None
    if not isinstance(origin, RayOrigins):
        return location, len(points), inside, None, None
    counts = np.bincount(np.asarray(origin.index, dtype=np.int64) + 1, minlength=len(origin.table) + 1)
    names = tuple(origin.names) or tuple(f'origin {row}' for row in range(len(origin.table)))
    return location, len(points), inside, None, (names, np.roll(counts, -1))


def _init_worker(source, grid, parent_pid):
    die_with_parent(parent_pid)
    _WORKER.update(source=source, grid=grid)


def _scan_in_worker(index):
    return scan_sweep(_WORKER['source'], _WORKER['grid'], index)


def scan(data_cfg, split: str, workers: int = 1, progress: bool = True) -> dict:
    """Scan DATA_CONFIG's `split` ('train' or 'test'); returns counts, point statistics and bad sweeps."""
    source = build_source(data_cfg, data_cfg.DATA_PATH, data_cfg.DATA_SPLIT[split])
    interval = data_cfg.get('SAMPLE_INTERVAL', {}).get(split, 1)
    indices = range(0, len(source), interval)
    grid = (np.asarray(data_cfg.POINT_CLOUD_RANGE, dtype=np.float32),
            np.asarray(data_cfg.VOXEL_SIZE, dtype=np.float32), data_cfg.get('SHIFT_COOR'))
    bar = dict(total=len(indices), desc='scanning', unit='sweep', disable=not progress, dynamic_ncols=True)
    if workers > 1:
        with multiprocessing.Pool(workers, _init_worker, (source, grid, os.getpid())) as pool:
            results = list(tqdm(pool.imap(_scan_in_worker, indices, chunksize=64), **bar))
    else:
        results = [scan_sweep(source, grid, i) for i in tqdm(indices, **bar)]
    good = [(points, inside) for _, points, inside, reason, _ in results if reason is None]
    per_origin = [r[4] for r in results if r[4] is not None]
    return {'listed': len(source), 'scanned': len(results), 'interval': interval, 'usable': len(good),
            'points': np.array([g[0] for g in good], dtype=np.int64),
            'inside': np.array([g[1] for g in good], dtype=np.int64),
            'origin_names': per_origin[0][0] if per_origin else (),
            'per_origin': np.array([counts for _, counts in per_origin], dtype=np.int64),
            'bad': [(location, reason) for location, _, _, reason, _ in results if reason is not None],
            'unread': list(source.unread)}


def _spread(counts) -> str:
    if len(counts) == 0:
        return 'none'
    return f'min {counts.min():,} / median {int(np.median(counts)):,} / max {counts.max():,}'


def report(summary: dict, data_cfg, split: str, max_listed: int) -> bool:
    """Print the summary; returns True when the bad share is within MAX_BAD_FRACTION."""
    limit = data_cfg.get('MAX_BAD_FRACTION', 0.05)
    bad = summary['bad']
    share = len(bad) / max(summary['scanned'], 1)
    print(f'{data_cfg.DATASET} {split} ({data_cfg.DATA_SPLIT[split]}) under {data_cfg.DATA_PATH}: '
          f'{summary["listed"]:,} sweeps listed, {summary["scanned"]:,} scanned (every {summary["interval"]}), '
          f'{summary["usable"]:,} usable')
    if summary['unread']:
        print(f'listed, giving no sweep: {len(summary["unread"]):,}')
        for where, why in summary['unread'][:max_listed]:
            print(f'  {where}: {why}')
    print(f'points per sweep: {_spread(summary["points"])}')
    print(f'inside POINT_CLOUD_RANGE: {_spread(summary["inside"])}')
    if summary['origin_names']:  # per lidar (Waymo): which sensor cast the points, and those of unknown origin
        medians = np.median(summary['per_origin'], axis=0).astype(np.int64)
        names = summary['origin_names'] + ('unknown origin (input only, no queries)',)
        print('points per sweep by ray origin (median): ' + ' / '.join(f'{n} {m:,}' for n, m in zip(names, medians)))
    print(f'bad sweeps: {len(bad):,} ({share:.2%}; DATA_CONFIG.MAX_BAD_FRACTION {limit:.2%})')
    for location, reason in bad[:max_listed]:
        print(f'  {location}: {reason}')
    if len(bad) > max_listed:
        print(f'  ... and {len(bad) - max_listed:,} more (--max_listed)')
    return share <= limit


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__[__doc__.index('Exit status'):],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(p, 'YAML config, e.g. cfgs/also_pretrain_kitti_raw.yaml')
    p.add_argument('--split', choices=['train', 'test'], default='train')
    p.add_argument('--workers', type=int, default=1, help='reading processes')
    p.add_argument('--max_listed', type=int, default=100, help='bad sweeps printed by name')
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    check_config(cfg)
    status = 0
    # DATA_CONFIG.SOURCES: every source, shifted into the target's grid as training reads it
    for data_cfg in source_configs(cfg.DATA_CONFIG) if cfg.DATA_CONFIG.get('SOURCES') else [cfg.DATA_CONFIG]:
        if 'NAME' in data_cfg:
            print(f'source {data_cfg.NAME} (SHIFT_COOR {list(data_cfg.SHIFT_COOR)}):')
        summary = scan(data_cfg, args.split, args.workers)
        within_limit = report(summary, data_cfg, args.split, args.max_listed)
        if not summary['usable']:
            print(f'nothing usable: a training run on this split stops (exit status {NOTHING_USABLE})')
            status = NOTHING_USABLE
        elif not within_limit:
            status = status or 1
    return status


if __name__ == '__main__':
    run_main(main)
