"""Which stock OpenPCDet detector configs ALSO pretrains the exact backbone of, checked end to end.

    python tools/stock_coverage.py --facts ../shared/STOCK_BACKBONES.json [--only kitti_models/pv_rcnn.yaml ...]

For every config of the facts file (OpenPCDet's own backbone layouts, tests/facts/stock_backbones.json): derive
the ALSO config from it (cfgs/also_pretrain.yaml + the detector's backbone and geometry), compare the derived
model's backbone keys and shapes, in order, with the facts, write two or three synthetic sweeps in the layout of
its dataset, run tools/train.py for one CPU step on them (POINT_CLOUD_RANGE cropped to a box of about 16 m so
that the step is quick: weight shapes do not depend on the range), and let it export the backbone and load it
into the detector built from the facts. Prints a table and, last, `covered N/M configs` (N: every key and shape
equal and the step, export and load fine; M: every config in the file).
"""
import argparse
import contextlib
import importlib.util
import io
import json
import re
import tempfile
from pathlib import Path

import numpy as np
import tqdm

from also_pcdet import pcdet_seam
from also_pcdet.config import REPO_ROOT, cfg_from_yaml_file, write_resolved_config
from also_pcdet.detector_config import DerivationError, derive_config, detector_cfg_from_facts
from also_pcdet.datasets.synthetic import write_kitti_object
from also_pcdet.datasets.synthetic.layout_writers import (write_custom, write_lyft, write_nuscenes, write_once,
                                                          write_waymo_processed_sweeps)
from also_pcdet.engine.cli import add_debug_flag, run_main
from also_pcdet.engine.pretrained_check import DONE, BackboneParts

ALSO_CFG = REPO_ROOT / 'cfgs' / 'also_pretrain.yaml'
BACKBONE_PARTS = ('vfe', 'backbone_3d', 'map_to_bev_module', 'backbone_2d')
CROP_METRES = 16.0
# layout -> writer of a few sweeps of which at most two are in the train split (one training step at batch 2)
WRITERS = {
    'KittiObjectSweeps': lambda root: write_kitti_object(root, num_sweeps=3, seed=0, val_every=5),
    'WaymoProcessedSweeps': lambda root: write_waymo_processed_sweeps(root, 3, seed=0, max_frames_per_segment=1),
    'NuScenesSweeps': lambda root: write_nuscenes(root, 2, seed=0, frames_per_scene=1),
    'LyftSweeps': lambda root: write_lyft(root, 2, seed=0),
    'CustomSweeps': lambda root: write_custom(root, 3, seed=0),
    'OnceSweeps': lambda root: write_once(root, 4, seed=0, frames_per_sequence=1),  # raw_small: the 4th
}
STEP_OVERRIDES = ['DATA_CONFIG.QUERIES.NUM_QUERIES', '512', 'DATA_CONFIG.SAMPLE_INTERVAL.train', '1',
                  'OPTIMIZATION.LOG_INTERVAL', '1']


def facts_layout(entry: dict) -> list:
    """[(key, shape)] of the facts' backbone_state, in state_dict order."""
    state = entry.get('backbone_state') or {}
    return [(key, list(shape)) for part in BACKBONE_PARTS for key, shape in state.get(part, [])]


def model_layout(cfg) -> list:
    """[(key, shape)] of the backbone modules the ALSO config `cfg` builds."""
    return [(key, list(value.shape)) for key, value in BackboneParts(cfg).state_dict().items()
            if key.startswith(tuple(f'{part}.' for part in BACKBONE_PARTS))]


def missing_module(cfg) -> str:
    """The first backbone module no registry of this installation builds, as 'MODEL.<section> <NAME>'."""
    registries = {'VFE': pcdet_seam.VFES, 'BACKBONE_3D': pcdet_seam.BACKBONES_3D, 'MAP_TO_BEV': pcdet_seam.MAP_TO_BEV,
                  'BACKBONE_2D': pcdet_seam.BACKBONES_2D}
    return next((f'MODEL.{section} {cfg.MODEL[section].NAME}' for section, registry in registries.items()
                 if cfg.MODEL.get(section) and cfg.MODEL[section].NAME not in registry), '')


def crop_range(cfg) -> list:
    """A box of about CROP_METRES inside POINT_CLOUD_RANGE whose x and y cell counts every configured BEV
    stride divides; z as configured. Front-only ranges (x from 0) keep their start."""
    pc_range = np.asarray(cfg.DATA_CONFIG.POINT_CLOUD_RANGE, dtype=np.float64)
    voxel = np.asarray(cfg.DATA_CONFIG.VOXEL_SIZE, dtype=np.float64)
    multiple = (8 if cfg.MODEL.get('BACKBONE_3D') else 1) * int(np.prod((cfg.MODEL.get('BACKBONE_2D') or {}).get('LAYER_STRIDES') or [1]))
    box = []
    for axis in (0, 1):
        cells = multiple * max(1, round(CROP_METRES / (multiple * voxel[axis])))
        extent = cells * voxel[axis]
        start = pc_range[axis] if pc_range[axis] >= 0 else -extent / 2
        box.append((round(float(start), 4), round(float(start + extent), 4)))
    return [box[0][0], box[1][0], float(pc_range[2]), box[0][1], box[1][1], float(pc_range[5])]


def train_one_step(detector_yaml: Path, cfg, data: Path, work: Path) -> str:
    """tools/train.py for one step on `data`; returns its export check line (`==> Done (loaded N/M)`)."""
    spec = importlib.util.spec_from_file_location('also_train_tool', Path(__file__).with_name('train.py'))
    tool = importlib.util.module_from_spec(spec)  # tools/train.py itself, as a user runs it
    spec.loader.exec_module(tool)
    crop = crop_range(cfg)
    argv = ['--cfg_file', str(ALSO_CFG), '--detector_cfg', str(detector_yaml), '--epochs', '1', '--batch_size', '2',
            '--workers', '0', '--fix_random_seed', '--output_root', str(work / 'output'), '--extra_tag', work.name,
            '--set', 'DATA_CONFIG.DATA_PATH', str(data), 'DATA_CONFIG.POINT_CLOUD_RANGE',
            '[' + ','.join(f'{v:g}' for v in crop) + ']', *STEP_OVERRIDES]
    log = io.StringIO()
    try:
        with contextlib.redirect_stderr(log):
            tool.main(argv)
    except (SystemExit, Exception) as err:  # any failure of the run is this config's result
        lines = [line for line in log.getvalue().splitlines() if 'ERROR' in line] or [f'{type(err).__name__}: {err}']
        raise RuntimeError(lines[-1].split('ERROR', 1)[-1].strip()) from err
    done = [line for line in log.getvalue().splitlines() if 'checked against' in line and DONE.search(line)]
    return DONE.search(done[-1]).group(0) if done else ''


def cover(entry: dict, also_cfg, work: Path, data_roots: dict) -> dict:
    """One table row for a facts entry."""
    expected = facts_layout(entry)
    row = {'config': entry['config'], 'family': entry.get('family', '?'), 'matched': 0, 'expected': len(expected),
           'step': False, 'note': ''}
    detector = detector_cfg_from_facts(entry)
    try:
        cfg = derive_config(also_cfg, detector, entry['config'])
    except DerivationError as err:
        row['note'] = str(err).split(': ', 1)[-1].replace('cannot pretrain this backbone with ALSO: ', 'refused: ')
        return row
    missing = missing_module(cfg)
    if missing:
        row['note'] = f'{missing} has no also-pcdet fallback (with OpenPCDet installed, its registries build it)'
        return row
    layout = model_layout(cfg)
    row['matched'] = sum(1 for mine, fact in zip(layout, expected) if mine == fact)
    if layout != expected:
        first = next((i for i, (a, b) in enumerate(zip(layout, expected)) if a != b), min(len(layout), len(expected)))
        row['note'] = (f'{len(layout)} keys built, {len(expected)} expected; first difference at #{first}: '
                       f'{layout[first] if first < len(layout) else "-"} vs {expected[first] if first < len(expected) else "-"}')
        return row
    dataset = cfg.DATA_CONFIG.DATASET
    if dataset not in WRITERS:
        row['note'] = f'no synthetic writer for {dataset}'
        return row
    if dataset not in data_roots:
        data_roots[dataset] = work / 'data' / dataset
        WRITERS[dataset](data_roots[dataset])
    name = re.sub(r'[^A-Za-z0-9_.-]', '_', entry['config'])
    run = work / name
    run.mkdir(parents=True, exist_ok=True)
    detector_yaml = run / 'detector.yaml'
    write_resolved_config(detector, detector_yaml, f'{entry["config"]}: the parts the derivation reads, from the facts')
    try:
        row['done'] = train_one_step(detector_yaml, cfg, data_roots[dataset], run)
        row['step'] = bool(row['done'])
        row['note'] = f'{dataset}; export {row["done"]}'
    except RuntimeError as err:
        row['note'] = f'step failed: {err}'
    return row


def table(rows: list) -> str:
    lines = ['| config | family | keys matched/expected | step ok | note |', '| --- | --- | --- | --- | --- |']
    lines += [f"| {r['config']} | {r['family']} | {r['matched']}/{r['expected']} | {'yes' if r['step'] else 'no'} | "
              f"{r['note'].replace('|', '/')} |" for r in rows]
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_debug_flag(parser)
    parser.add_argument('--facts', required=True, help='STOCK_BACKBONES.json (tests/facts/stock_backbones.json)')
    parser.add_argument('--only', nargs='+', default=None, help='these configs of the file only (M still counts all)')
    parser.add_argument('--work', default=None, help='folder for sweeps and runs (default: a temporary one)')
    args = parser.parse_args(argv)
    try:
        entries = json.loads(Path(args.facts).read_text())['configs']
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SystemExit(f'stock_coverage: {args.facts}: not a STOCK_BACKBONES.json facts file: {err}') from err
    chosen = [e for e in entries if args.only is None or e['config'] in args.only]
    unknown = sorted(set(args.only or []) - {e['config'] for e in entries})
    if unknown:
        raise SystemExit(f'stock_coverage: not in {args.facts}: {", ".join(unknown)}')
    also_cfg = cfg_from_yaml_file(ALSO_CFG)
    with tempfile.TemporaryDirectory(prefix='stock_coverage_') as tmp:
        work = Path(args.work or tmp)
        data_roots, rows = {}, []
        for entry in tqdm.tqdm(chosen, desc='configs', unit='config', dynamic_ncols=True):
            rows.append(cover(entry, also_cfg, work, data_roots))
    print(f'One CPU training step per config (tools/train.py) on two synthetic sweeps in the layout of its dataset, '
          f'POINT_CLOUD_RANGE cropped to a box of about {CROP_METRES:g} m (front-only ranges keep their start; weight '
          f'shapes do not depend on the range); backbone keys and shapes compared in order with '
          f'{Path(args.facts).name}; the export loaded into the detector built from the facts (OpenPCDet\'s Done '
          f'line: M adds global_step).')
    print(table(rows))
    covered = sum(1 for r in rows if r['step'] and r['matched'] == r['expected'])
    print(f'covered {covered}/{len(entries)} configs')
    return 0


if __name__ == '__main__':
    run_main(main)
