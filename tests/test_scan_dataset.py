"""tools/scan_dataset.py on synthetic KITTI raw drives with two bad sweeps among five."""
import numpy as np
import pytest

from also_pcdet.datasets.sweep_checks import inside_range
from also_pcdet.datasets.readers.waymo import WAYMO_LIDAR_NAMES
from also_pcdet.datasets.synthetic.layout_writers import (write_kitti360, write_kitti_raw, write_nuscenes_infos,
                                                          write_once, write_waymo_processed_sweeps)
from conftest import REPO
from tools import scan_dataset

KITTI_RANGE = [0, -40, -3, 70.4, 40, 1]


@pytest.fixture(scope='module')
def drives(tmp_path_factory):
    """Five sweeps in two drives; sweep 1 is truncated and sweep 3 has an infinite coordinate."""
    root = tmp_path_factory.mktemp('kitti_raw')
    paths = write_kitti_raw(root, 5, seed=2, frames_per_drive=3)
    paths[1].write_bytes(paths[1].read_bytes()[:-4])
    points = np.fromfile(paths[3], dtype=np.float32).reshape(-1, 4)
    points[7, 1] = np.inf
    points.tofile(paths[3])
    return root, paths


def run(capsys, root, *args, sets=()):
    status = scan_dataset.main(['--cfg_file', str(REPO / 'cfgs' / 'also_pretrain_kitti_raw.yaml'), *args,
                                '--set', 'DATA_CONFIG.DATA_PATH', str(root),
                                'DATA_CONFIG.ALLOW_OBJECT_VAL_OVERLAP', 'True', *sets])  # no object devkit here
    return status, capsys.readouterr().out.splitlines()


def test_scan_counts_points_and_names_bad_files(drives, capsys):
    root, paths = drives
    status, lines = run(capsys, root)
    good = [np.fromfile(paths[i], dtype=np.float32).reshape(-1, 4) for i in (0, 2, 4)]
    sizes = sorted(len(p) for p in good)
    inside = sorted(int(inside_range(p[:, :3], np.float32(KITTI_RANGE)).sum()) for p in good)
    assert status == 1  # 40 % bad is past MAX_BAD_FRACTION 5 %
    assert lines == [
        f'KittiRawSweeps train (train) under {root}: 5 sweeps listed, 5 scanned (every 1), 3 usable',
        f'points per sweep: min {sizes[0]:,} / median {sizes[1]:,} / max {sizes[2]:,}',
        f'inside POINT_CLOUD_RANGE: min {inside[0]:,} / median {inside[1]:,} / max {inside[2]:,}',
        'bad sweeps: 2 (40.00%; DATA_CONFIG.MAX_BAD_FRACTION 5.00%)',
        f'  {paths[1]}: truncated: {paths[1].stat().st_size} bytes is not a multiple of 4 float32 fields '
        f'(16 bytes per point)',
        f'  {paths[3]}: 1 of {len(np.fromfile(paths[3], dtype=np.float32)) // 4} points have NaN/inf values',
    ]
    assert 0 < inside[0] < sizes[0]  # the front box holds about half of a 360-degree sweep


def test_workers_agree_and_the_limit_sets_the_status(drives, capsys):
    root, _ = drives
    _, one = run(capsys, root)
    status, two = run(capsys, root, '--workers', '2', '--max_listed', '1', sets=('DATA_CONFIG.MAX_BAD_FRACTION', '0.5'))
    assert status == 0
    assert two[:3] == one[:3] and two[3] == 'bad sweeps: 2 (40.00%; DATA_CONFIG.MAX_BAD_FRACTION 50.00%)'
    assert two[4:] == [one[4], '  ... and 1 more (--max_listed)']
    status, test = run(capsys, root, '--split', 'test', sets=('DATA_CONFIG.DATA_SPLIT.test', 'all'))  # sweep 0 only
    assert status == 0 and test[0].endswith('5 sweeps listed, 1 scanned (every 20), 1 usable')


@pytest.mark.parametrize('name, writer, sweeps, split, listed', [
    ('kitti360', write_kitti360, 6, 'data_3d_semantics/train/2013_05_28_drive_train.txt', 4),  # frames 0-3
    ('once', write_once, 14, 'raw_small', 2),  # the fourth sequence: frames 12 and 13
    ('nuscenes_10sweeps', write_nuscenes_infos, 11, 'nuscenes_infos_10sweeps_train.pkl', 2),  # key frames 0, 10
])
def test_scan_reads_kitti360_and_once_layouts(tmp_path, capsys, name, writer, sweeps, split, listed):
    paths = writer(tmp_path, sweeps, seed=1)
    bad = paths[{'kitti360': 3, 'once': 13, 'nuscenes_10sweeps': 10}[name]]
    bad.write_bytes(b'')  # the last sweep of the split is empty
    status = scan_dataset.main(['--cfg_file', str(REPO / 'cfgs' / f'also_pretrain_{name}.yaml'),
                                '--set', 'DATA_CONFIG.DATA_PATH', str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert status == 1
    assert lines[0].endswith(f'train ({split}) under {tmp_path}: {listed} sweeps listed, {listed} scanned '
                             f'(every 1), {listed - 1} usable')
    assert lines[-1] == f'  {bad}: empty sweep (0 bytes)'


def test_scan_breaks_waymo_points_down_per_lidar(tmp_path, capsys):
    """Waymo's five lidars: the median points of each per sweep, from the info list's per-lidar counts."""
    truths = write_waymo_processed_sweeps(tmp_path, 3, seed=4, max_frames_per_segment=2)
    status = scan_dataset.main(['--cfg_file', str(REPO / 'cfgs' / 'also_pretrain_waymo.yaml'),
                                '--set', 'DATA_CONFIG.DATA_PATH', str(tmp_path), 'DATA_CONFIG.SAMPLE_INTERVAL.train', '1'])
    lines = capsys.readouterr().out.splitlines()
    train = [t for t in truths if t['segment'] == truths[0]['segment']]
    medians = np.median([t['counts'] for t in train], axis=0).astype(int)
    assert status == 0 and len(train) == 2
    assert lines[3] == ('points per sweep by ray origin (median): ' + ' / '.join(
        f'{name} {m:,}' for name, m in zip(WAYMO_LIDAR_NAMES, medians)) + ' / unknown origin (input only, no queries) 0')
    assert medians[0] > 10 * medians[1:].max() > 0  # TOP dominates; the short-range lidars all contribute
