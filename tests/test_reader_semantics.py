"""The readers follow OpenPCDet's dataset classes where it decides what the detector sees: Waymo's
POINTS_TANH_DIM, DISABLE_NLZ_FLAG_ON_POINTS (code default False) and sequence-name variants, nuScenes' random
past sweeps below MAX_SWEEPS; official ALSO's KITTI-360 list files and nuScenes split; `all` warns on every layout
with a val split."""
import logging
import re
import shutil

import numpy as np
import pytest
from easydict import EasyDict

from also_pcdet.config import ConfigError, cfg_from_yaml_file
from also_pcdet.datasets import SweepDataset
from also_pcdet.datasets.official_splits import shipped_list
from also_pcdet.datasets.readers import SweepError
from also_pcdet.datasets.sources import LyftSweeps, build_source
from also_pcdet.datasets.synthetic.layout_writers import (write_kitti360, write_lyft, write_nuscenes,
                                                          write_nuscenes_infos, write_once, write_sequences,
                                                          write_waymo_processed_sweeps, write_waymo_tfrecord_sweeps)
from also_pcdet.detector_config import derive_from_file
from conftest import REPO
from shipped_configs import shipped_config as config

CENTERPOINT = REPO / 'tests' / 'detector_cfgs' / 'waymo_centerpoint.yaml'  # DATA_CONFIG of waymo_dataset.yaml


@pytest.fixture(scope='module')
def waymo(tmp_path_factory):
    processed, tfrecord = tmp_path_factory.mktemp('processed'), tmp_path_factory.mktemp('tfrecord')
    write_waymo_processed_sweeps(processed, 2, seed=5)
    write_waymo_tfrecord_sweeps(tfrecord, 2, seed=5)
    return processed, tfrecord


@pytest.fixture
def logged(caplog):
    logger = logging.getLogger('also_pcdet')  # train.py's logger does not propagate: listen on it directly
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


def detector_variant(tmp_path, drop=(), add=''):
    """tests/detector_cfgs/waymo_centerpoint.yaml without the DATA_CONFIG lines in `drop`, plus `add` in it."""
    lines = [line for line in CENTERPOINT.read_text().splitlines() if not any(key in line for key in drop)]
    at = lines.index('DATA_CONFIG:') + 1
    path = tmp_path / 'detector.yaml'
    path.write_text('\n'.join(lines[:at] + ([f'    {add}'] if add else []) + lines[at:]) + '\n')
    return path


def test_waymo_points_tanh_dim_squashes_the_listed_columns(waymo, tmp_path):
    processed, tfrecord = waymo
    raw = None
    for dims, squashed in ((None, {3}), ('[3, 4]', {3, 4})):
        sets = ('DATA_CONFIG.POINTS_TANH_DIM', dims) if dims else ()
        source = build_source(config('waymo', processed, *sets).DATA_CONFIG, processed, 'val')
        points, _ = source.read(0)
        raw = np.load(source.path(0))  # DISABLE_NLZ_FLAG_ON_POINTS: True, every point kept
        for column in (3, 4):  # OpenPCDet: points_all[:, dim] = np.tanh(points_all[:, dim]) for dim in the list
            expected = np.tanh(raw[:, column]) if column in squashed else raw[:, column]
            np.testing.assert_allclose(points[:, column], expected, rtol=1e-6, atol=1e-7)
        frames = build_source(config('waymo_tfrecord', tfrecord, *sets).DATA_CONFIG, tfrecord, 'val').read(0)[0]
        np.testing.assert_allclose(frames, points, atol=1e-3)  # the tfrecord reader agrees
    assert (raw[:, 4] != np.tanh(raw[:, 4])).any()  # the elongation column tells the two apart
    with pytest.raises(ConfigError, match=r'POINTS_TANH_DIM \[3, 5\]: columns of x, y, z, intensity, elongation'):
        build_source(config('waymo', processed, 'DATA_CONFIG.POINTS_TANH_DIM', '[3, 5]').DATA_CONFIG, processed, 'val')

    also = cfg_from_yaml_file(REPO / 'cfgs' / 'also_pretrain.yaml')  # --detector_cfg carries the detector's list
    dsvt_like = detector_variant(tmp_path, add='POINTS_TANH_DIM: [3, 4]')
    assert derive_from_file(also, dsvt_like).DATA_CONFIG.POINTS_TANH_DIM == [3, 4]
    assert derive_from_file(also, CENTERPOINT).DATA_CONFIG.POINTS_TANH_DIM is None


def test_waymo_nlz_points_dropped_by_default_and_derived_from_the_detector(waymo, tmp_path):
    processed, _ = waymo
    cfg = config('waymo', processed)
    del cfg.DATA_CONFIG['DISABLE_NLZ_FLAG_ON_POINTS']  # OpenPCDet: dataset_cfg.get(..., False) drops NLZ points
    source = build_source(cfg.DATA_CONFIG, processed, 'val')
    flags = np.load(source.path(0))[:, 5]
    assert (flags == 1).any() and len(source.read(0)[0]) == (flags == -1).sum()

    also = cfg_from_yaml_file(REPO / 'cfgs' / 'also_pretrain.yaml')
    assert derive_from_file(also, CENTERPOINT).DATA_CONFIG.DISABLE_NLZ_FLAG_ON_POINTS is True  # waymo_dataset.yaml
    without = detector_variant(tmp_path, drop=('DISABLE_NLZ_FLAG_ON_POINTS',))
    assert derive_from_file(also, without).DATA_CONFIG.DISABLE_NLZ_FLAG_ON_POINTS is False


def test_waymo_sequence_name_variants_resolve_as_openpcdet(waymo, tmp_path):
    """OpenPCDet's check_sequence_name_with_all_version: a listed `segment-...` is also found as
    `training_segment-...` (or validation_, testing_), else without `_with_camera_labels`."""
    processed, tfrecord = waymo
    root = tmp_path / 'processed'
    shutil.copytree(processed, root)
    tag = root / 'waymo_processed_data_v0_5_0'
    old = 'segment-0001_with_camera_labels'
    (tag / old / f'{old}.pkl').rename(tag / old / f'validation_{old}.pkl')
    (tag / old).rename(tag / f'validation_{old}')
    new = 'segment-0000'
    (tag / 'segment-0000_with_camera_labels' / 'segment-0000_with_camera_labels.pkl').rename(
        tag / 'segment-0000_with_camera_labels' / f'{new}.pkl')
    (tag / 'segment-0000_with_camera_labels').rename(tag / new)
    cfg = config('waymo', root)
    val = build_source(cfg.DATA_CONFIG, root, 'val')
    assert [p.parent.name for p in val.items] == [f'validation_{old}'] and len(val.read(0)[0]) > 1000
    train = build_source(cfg.DATA_CONFIG, root, 'train')
    assert {p.parent.name for p in train.items} == {new} and len(train.read(0)[0]) > 1000

    raw = tmp_path / 'tfrecord'
    shutil.copytree(tfrecord, raw)
    (raw / 'raw_data' / f'{old}.tfrecord').rename(raw / 'raw_data' / f'validation_{old}.tfrecord')
    source = build_source(config('waymo_tfrecord', raw).DATA_CONFIG, raw, 'val')
    assert [str(name) for name, _ in source.items] == [f'raw_data/validation_{old}.tfrecord']


def test_kitti360_official_also_list_files_are_split_files(tmp_path):
    write_kitti360(tmp_path, 9, seed=2)  # drive 0000: frames 0-5, drive 0002: frames 0-2
    line = 'data_3d_raw/2013_05_28_drive_{:04d}_sync/velodyne_points/data/{:010d}.bin'.format
    listed = [line(2, 1), line(0, 4), line(0, 2), line(0, 4), line(2, 0)]  # ALSO's val list repeats frames
    (tmp_path / 'kitti_360_val_velodynes.txt').write_text(''.join(f'{entry}\n' for entry in listed))
    cfg = config('kitti360', tmp_path)
    source = build_source(cfg.DATA_CONFIG, tmp_path, 'kitti_360_val_velodynes.txt')
    assert [str(path) for path in source.items] == [line(2, 0), line(2, 1), line(0, 2), line(0, 4)]  # each once
    (tmp_path / 'kitti_360_val_velodynes.txt').write_text(line(0, 9) + '\n')
    assert len(build_source(cfg.DATA_CONFIG, tmp_path, 'kitti_360_val_velodynes.txt')) == 0
    (tmp_path / 'bad.txt').write_text('data_3d_raw/2013_05_28_drive_0000_sync/image_00/0000000001.png\n')
    with pytest.raises(SweepError, match=r'bad.txt: neither .*<drive>/velodyne_points/data/<frame>.bin sweeps'):
        build_source(cfg.DATA_CONFIG, tmp_path, 'bad.txt')


def test_all_warns_on_every_layout_with_a_val_split(tmp_path, logged):
    builders = {
        'Kitti360Sweeps': lambda: build_source(config('kitti360', tmp_path / 'k360').DATA_CONFIG, tmp_path / 'k360',
                                               'all'),
        'OnceSweeps': lambda: build_source(config('once', tmp_path / 'once').DATA_CONFIG, tmp_path / 'once', 'all'),
        'SequenceSweeps': lambda: build_source(config('semantic_kitti', tmp_path / 'seq').DATA_CONFIG, tmp_path / 'seq',
                                               'all'),
        'LyftSweeps': lambda: LyftSweeps(EasyDict(VERSION='trainval'), tmp_path / 'lyft', 'all'),
    }
    write_kitti360(tmp_path / 'k360', 1, seed=0)
    write_once(tmp_path / 'once', 1, seed=0)
    write_sequences(tmp_path / 'seq', 1, seed=0)
    write_lyft(tmp_path / 'lyft', 1, seed=0)
    for layout, build in builders.items():
        logged.clear()
        assert len(build()) == 1
        assert re.search(f'{layout} DATA_SPLIT `all` under .* includes the official val scenes', logged.text), layout


def test_max_sweeps_below_the_pkl_draws_a_seeded_random_subset(tmp_path):
    write_nuscenes_infos(tmp_path, 11, seed=1)  # key frame 10 has 9 past sweeps in the pkl
    cfg = config('nuscenes_10sweeps', tmp_path, 'DATA_CONFIG.MAX_SWEEPS', '4')
    source = build_source(cfg.DATA_CONFIG, tmp_path, cfg.DATA_CONFIG.DATA_SPLIT.train)
    lags = [sweep['time_lag'] for sweep in source.items[1]['sweeps']]
    drawn = [tuple(s['time_lag'] for s in source.past_sweeps(1, np.random.default_rng(seed))) for seed in range(20)]
    assert all(len(set(d)) == 3 and set(d) <= set(lags) for d in drawn)  # MAX_SWEEPS - 1, without replacement
    assert len(set(drawn)) > 10 and any(d != tuple(lags[:3]) for d in drawn)  # not the first three
    points, _ = source.read(1, np.random.default_rng(7))
    merged = np.unique(points[:, 4])
    np.testing.assert_allclose(merged, [0.0] + sorted(drawn[7]), rtol=1e-6)  # the key frame and the drawn three

    dataset = SweepDataset(cfg.DATA_CONFIG, training=True, seed=3)
    again = SweepDataset(cfg.DATA_CONFIG, training=True, seed=3)
    np.testing.assert_array_equal(dataset[1]['points'], again[1]['points'])  # deterministic under the seed
    subsets = set()
    for epoch in range(4):
        dataset.set_epoch(epoch)
        subsets.add(tuple(np.unique(np.round(dataset[1]['points'][:, 4], 3))))
    assert len(subsets) > 1  # drawn anew each epoch, as OpenPCDet draws on every read


def test_nuscenes_also_split_holds_out_official_alsos_100_scenes(tmp_path):
    also_val, train = shipped_list('nuscenes_also_val'), shipped_list('nuscenes_train')
    assert len(also_val) == len(set(also_val)) == 100 and set(also_val) < set(train)
    assert (also_val[0], also_val[-1]) == ('scene-0008', 'scene-1107')
    paths = write_nuscenes(tmp_path, 13, seed=1, frames_per_scene=1)  # even scenes: train 0001 ... 0008
    cfg = config('nuscenes', tmp_path)

    def split(name):
        return [tmp_path / path for path in build_source(cfg.DATA_CONFIG, tmp_path, name).items]
    assert split('also_val') == [paths[12]]  # scene-0008
    assert split('also_train') == [paths[i] for i in range(0, 12, 2)]
    assert sorted(split('also_train') + split('also_val')) == sorted(split('train'))
