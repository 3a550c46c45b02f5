"""Each dataset layout: synthetic sweeps written in the real on-disk layout by tools/make_synthetic.py, read
back through its source (selected by DATA_CONFIG.DATASET) and its shipped config."""
import json
import os
import re

import numpy as np
import pytest

from also_pcdet.config import cfg_from_list
from also_pcdet.datasets import SweepDataset
from also_pcdet.datasets.readers import SweepError
from also_pcdet.datasets.readers.tfrecord_io import index_tfrecord
from also_pcdet.datasets.readers.waymo import (WAYMO_TOP_LIDAR_ORIGIN, read_waymo_info, read_waymo_npy,
                                               read_waymo_tfrecord_frame)
from also_pcdet.datasets.sources import build_source
from also_pcdet.datasets.synthetic import HDL64, make_sweep
from also_pcdet.datasets.synthetic.layout_writers import HDL32, PANDAR40
from shipped_configs import shipped_config as config
from tools import make_synthetic

SEED = 3
NUSCENES_NAME = re.compile(r'n\d{3}-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}[+-]\d{4}__LIDAR_TOP__\d{16}\.pcd\.bin')


@pytest.fixture(scope='module')
def roots(tmp_path_factory):
    """One synthetic dataset per layout, written by the make_synthetic CLI."""
    sizes = {'kitti_raw': 6, 'kitti360': 9, 'sequences': 6, 'nuscenes': 12, 'once': 14, 'waymo_processed': 2,
             'waymo_tfrecord': 2}
    out = {}
    for layout, num_sweeps in sizes.items():
        out[layout] = tmp_path_factory.mktemp(layout)
        make_synthetic.main(['--out', str(out[layout]), '--layout', layout, '--num_sweeps', str(num_sweeps),
                             '--seed', str(SEED)])
    return out


def relative(source):
    return [str(source.path(i).relative_to(source.root)) for i in range(len(source))]


def test_kitti_raw_layout_and_drive_list(roots):
    root = roots['kitti_raw']
    cfg = config('kitti_raw', root, 'DATA_CONFIG.ALLOW_OBJECT_VAL_OVERLAP', 'True')  # no object devkit mapping here
    source = build_source(cfg.DATA_CONFIG, root, cfg.DATA_CONFIG.DATA_SPLIT.train)
    first, second = '2011_09_26/2011_09_26_drive_0001_sync', '2011_09_28/2011_09_28_drive_0002_sync'
    assert relative(source) == ([f'{first}/velodyne_points/data/{i:010d}.bin' for i in range(4)]
                                + [f'{second}/velodyne_points/data/{i:010d}.bin' for i in range(2)])
    stamps = (root / second / 'velodyne_points' / 'timestamps.txt').read_text().splitlines()
    assert stamps == ['2011-09-26 13:02:25.000000000', '2011-09-26 13:02:25.100000000']
    for i in (0, 5):
        points, origin = source.read(i)
        np.testing.assert_array_equal(points, make_sweep(SEED, i, HDL64)['points'])
        assert origin.tolist() == [0.0, 0.0, 0.0]

    (root / 'drives.txt').write_text(f'{second}\n\n')  # a path or a bare drive name both work
    listed = build_source(cfg.DATA_CONFIG, root, 'drives.txt')
    assert relative(listed) == relative(source)[4:]
    (root / 'drives.txt').write_text('2011_09_26_drive_0009_sync\n')
    with pytest.raises(SweepError, match='2011_09_26_drive_0009_sync/velodyne_points/data: listed folder not found'):
        build_source(cfg.DATA_CONFIG, root, 'drives.txt')
    (root / 'drives.txt').write_text('drive_0001\n')
    with pytest.raises(SweepError, match=r"drives.txt: not <date>_drive_<NNNN>_sync names: \['drive_0001'\]"):
        build_source(cfg.DATA_CONFIG, root, 'drives.txt')
    with pytest.raises(SweepError, match='nowhere.txt: split file not found'):
        build_source(cfg.DATA_CONFIG, root, 'nowhere.txt')


def test_kitti360_real_layout_drive_lists_and_windows(roots):
    root = roots['kitti360']
    cfg = config('kitti360', root)
    first, second = '2013_05_28_drive_0000_sync', '2013_05_28_drive_0002_sync'
    raw = 'data_3d_raw/{}/velodyne_points/data/{:010d}.bin'.format
    everything = build_source(cfg.DATA_CONFIG, root, 'all')
    assert relative(everything) == [raw(first, i) for i in range(6)] + [raw(second, i) for i in range(3)]
    for i in (0, 7):
        points, origin = everything.read(i)
        np.testing.assert_array_equal(points, make_sweep(SEED, i, HDL64)['points'])
        assert origin.tolist() == [0.0, 0.0, 0.0]
    stamps = (root / 'data_3d_raw' / second / 'velodyne_points' / 'timestamps.txt').read_text().splitlines()
    assert stamps == ['2013-05-28 08:46:02.000000000', '2013-05-28 08:46:02.100000000', '2013-05-28 08:46:02.200000000']

    # KITTI-360's own window lists: overlapping windows read each frame once; val is the last two of drive 0000
    windows = (root / cfg.DATA_CONFIG.DATA_SPLIT.train).read_text().splitlines()
    assert windows[0] == f'data_3d_semantics/train/{first}/static/0000000000_0000000001.ply'
    train = build_source(cfg.DATA_CONFIG, root, cfg.DATA_CONFIG.DATA_SPLIT.train)
    assert relative(train) == [raw(first, i) for i in range(4)] + [raw(second, i) for i in range(3)]
    assert relative(build_source(cfg.DATA_CONFIG, root, cfg.DATA_CONFIG.DATA_SPLIT.test)) == [raw(first, 4), raw(first, 5)]

    # a drive list (names or paths), alone or mixed with windows: the whole drive
    (root / 'drives.txt').write_text(f'{second}\ndata_3d_raw/{first}\n\n')
    assert relative(build_source(cfg.DATA_CONFIG, root, 'drives.txt')) == relative(everything)[6:] + relative(everything)[:6]
    (root / 'drives.txt').write_text(f'{first}\ndata_3d_semantics/train/{first}/static/0000000004_0000000005.ply\n')
    assert relative(build_source(cfg.DATA_CONFIG, root, 'drives.txt')) == relative(everything)[:6]
    (root / 'drives.txt').write_text('2013_05_28_drive_0009_sync\n')
    with pytest.raises(SweepError, match='data_3d_raw/2013_05_28_drive_0009_sync/velodyne_points/data: listed folder not found'):
        build_source(cfg.DATA_CONFIG, root, 'drives.txt')
    (root / 'drives.txt').write_text('drive_0000\n')
    with pytest.raises(SweepError, match=r"drives.txt: neither .* windows: \['drive_0000'\]"):
        build_source(cfg.DATA_CONFIG, root, 'drives.txt')
    with pytest.raises(SweepError, match='data_3d_raw: no <date>_drive_<NNNN>_sync folder'):
        build_source(cfg.DATA_CONFIG, root / 'data_3d_raw', 'all')


def test_once_layout_splits_and_scaling(roots):
    root = roots['once']
    sequences = sorted(os.listdir(root / 'data'))
    assert sequences == ['000076', '000080', '000084', '000088']
    splits = {split: (root / 'ImageSets' / f'{split}.txt').read_text().split()
              for split in ('train', 'val', 'test', 'raw_small', 'raw_medium', 'raw_large')}
    assert splits['train'] == ['000076'] and splits['val'] == ['000080'] and splits['test'] == ['000084']
    assert splits['raw_small'] == splits['raw_medium'] == splits['raw_large'] == ['000088']
    frames = sorted(os.listdir(root / 'data' / '000080' / 'lidar_roof'))
    assert frames == [f'{1616347127200 + 100 * k}.bin' for k in range(4)]
    meta = json.loads((root / 'data' / '000080' / '000080.json').read_text())
    assert [frame['frame_id'] + '.bin' for frame in meta['frames']] == frames

    cfg = config('once', root)
    assert cfg.DATA_CONFIG.DATA_SPLIT.train == 'raw_small' and cfg.DATA_CONFIG.POINT_CLOUD_RANGE[3] == 75.2
    source = build_source(cfg.DATA_CONFIG, root, 'val')
    assert relative(source) == [f'data/000080/lidar_roof/{name}' for name in frames]
    raw = np.fromfile(root / 'data' / '000080' / 'lidar_roof' / frames[1], dtype=np.float32).reshape(-1, 4)
    truth = make_sweep(SEED, 5, PANDAR40)['points']
    np.testing.assert_array_equal(raw[:, :3], truth[:, :3])
    assert raw[:, 3].max() > 100 and np.all(raw[:, 3] == np.round(raw[:, 3]))
    points, origin = source.read(1)
    np.testing.assert_allclose(points[:, 3], raw[:, 3] / 255.0)
    np.testing.assert_array_equal(points[:, :3], raw[:, :3])
    assert origin.tolist() == [0.0, 0.0, 0.0]
    assert len(build_source(cfg.DATA_CONFIG, root, 'all')) == 14
    assert relative(build_source(cfg.DATA_CONFIG, root, 'raw_small')) == [
        f'data/000088/lidar_roof/{1616354327200 + 100 * k}.bin' for k in range(2)]
    with pytest.raises(SweepError, match='ImageSets/raw_medium.txt: split file not found'):
        (root / 'ImageSets' / 'raw_medium.txt').rename(root / 'medium.txt')
        try:
            build_source(cfg.DATA_CONFIG, root, 'raw_medium')
        finally:
            (root / 'medium.txt').rename(root / 'ImageSets' / 'raw_medium.txt')


def test_sequences_layout_and_sequence_list(roots):
    root = roots['sequences']
    cfg = config('semantic_kitti', root, 'DATA_CONFIG.DATA_SPLIT.train', '00,01')
    source = build_source(cfg.DATA_CONFIG, root, cfg.DATA_CONFIG.DATA_SPLIT.train)
    assert cfg.DATA_CONFIG.DATA_SPLIT.train == [0, '01']  # how --set parses it: ids are normalised
    assert relative(source) == ([f'sequences/00/velodyne/{i:06d}.bin' for i in range(4)]
                                + [f'sequences/01/velodyne/{i:06d}.bin' for i in range(2)])
    assert (root / 'sequences' / '01' / 'times.txt').read_text() == '0.000000e+00\n1.000000e-01\n'
    np.testing.assert_array_equal(source.read(4)[0], make_sweep(SEED, 4, HDL64)['points'])
    assert relative(build_source(cfg.DATA_CONFIG, root, ['1'])) == relative(source)[4:]
    assert relative(build_source(cfg.DATA_CONFIG, root, 'all')) == relative(source)
    with pytest.raises(SweepError, match='sequences/08/velodyne: listed folder not found'):
        build_source(cfg.DATA_CONFIG, root, ['08'])


def test_nuscenes_records_names_and_scaling(roots):
    root = roots['nuscenes']
    samples = sorted((root / 'samples' / 'LIDAR_TOP').iterdir())
    sweeps = sorted((root / 'sweeps' / 'LIDAR_TOP').iterdir())
    assert len(samples) == 2 and len(sweeps) == 10  # a key frame every 10th 20 Hz sweep
    assert all(NUSCENES_NAME.fullmatch(p.name) for p in samples + sweeps)
    raw = np.fromfile(samples[1], dtype=np.float32).reshape(-1, 5)
    truth = make_sweep(SEED, 10, HDL32)
    np.testing.assert_array_equal(raw[:, :3], truth['points'][:, :3])
    assert raw[:, 3].max() > 100 and np.all(raw[:, 3] == np.round(raw[:, 3])) and raw[:, 3].max() <= 255
    np.testing.assert_array_equal(raw[:, 4], truth['ring'])
    assert raw[:, 4].max() == 31

    cfg = config('nuscenes', root)
    source = build_source(cfg.DATA_CONFIG, root, 'all')
    assert relative(source) == [f'samples/LIDAR_TOP/{p.name}' for p in samples]
    points, origin = source.read(1)
    np.testing.assert_array_equal(points[:, :3], raw[:, :3])
    np.testing.assert_allclose(points[:, 3], raw[:, 3] / 255.0)
    assert points.shape[1] == 5 and not points[:, 4].any() and origin.tolist() == [0.0, 0.0, 0.0]

    cfg = config('nuscenes', root, 'DATA_CONFIG.INCLUDE_SWEEPS', 'True')
    assert len(build_source(cfg.DATA_CONFIG, root, 'all')) == 12
    (root / 'keyframes.txt').write_text(f'sweeps/LIDAR_TOP/{sweeps[3].name}\nsamples/LIDAR_TOP/{samples[0].name}\n')
    listed = build_source(cfg.DATA_CONFIG, root, 'keyframes.txt')
    assert relative(listed) == [f'sweeps/LIDAR_TOP/{sweeps[3].name}', f'samples/LIDAR_TOP/{samples[0].name}']


def test_waymo_processed_source_tags_each_point_with_its_lidar(roots):
    root = roots['waymo_processed']
    cfg = config('waymo', root)
    assert cfg.DATA_CONFIG.LIDAR_ORIGINS.TOP == list(WAYMO_TOP_LIDAR_ORIGIN)
    source = build_source(cfg.DATA_CONFIG, root, 'train')
    assert relative(source) == ['waymo_processed_data_v0_5_0/segment-0000_with_camera_labels/0000.npy']
    points, origins = source.read(0)
    info = source.path(0).parent / 'segment-0000_with_camera_labels.pkl'
    expected, expected_origins = read_waymo_npy(source.path(0), read_waymo_info(info)[0])
    np.testing.assert_array_equal(points, expected)
    np.testing.assert_array_equal(origins.index, expected_origins.index)
    assert points.shape[1] == 5 and origins.table[0].tolist() == list(WAYMO_TOP_LIDAR_ORIGIN)
    assert set(origins.index.tolist()) == {0, 1, 2, 3, 4}
    moved = config('waymo', root, 'DATA_CONFIG.LIDAR_ORIGINS.FRONT', '[4.0,0.0,0.5]')
    assert build_source(moved.DATA_CONFIG, root, 'train').read(0)[1].table[1].tolist() == [4.0, 0.0, 0.5]


@pytest.mark.parametrize('keep_nlz', ['True', 'False'])
def test_waymo_configs_agree_on_the_same_frames(roots, keep_nlz):
    """The processed and the tfrecord configs give the same points and ray origins for the same frame, with
    no-label-zone points kept (the shipped setting) or dropped."""
    nlz = ('DATA_CONFIG.DISABLE_NLZ_FLAG_ON_POINTS', keep_nlz)
    processed = build_source(config('waymo', roots['waymo_processed'], *nlz).DATA_CONFIG, roots['waymo_processed'], 'val')
    raw = build_source(config('waymo_tfrecord', roots['waymo_tfrecord'], *nlz).DATA_CONFIG, roots['waymo_tfrecord'],
                       'val')
    assert len(processed) == len(raw) == 1
    (points, origins), (raw_points, raw_origins) = processed.read(0), raw.read(0)
    flags = np.load(processed.path(0))[:, 5]
    assert len(points) == (len(flags) if keep_nlz == 'True' else (flags == -1).sum()) and (flags == 1).any()
    np.testing.assert_allclose(raw_points, points, atol=1e-3)
    np.testing.assert_array_equal(raw_origins.index, origins.index)
    np.testing.assert_allclose(raw_origins.table, origins.table)


def test_waymo_segment_without_info_list(roots, tmp_path):
    """Without num_points_of_each_lidar the lidar of a point is unknown: that segment is warned about and its
    frames skipped; with no info list at all the source refuses to build; a damaged one skips its frames."""
    import shutil
    root = tmp_path / 'waymo'
    shutil.copytree(roots['waymo_processed'], root)
    (root / 'ImageSets' / 'both.txt').write_text('segment-0000_with_camera_labels.tfrecord\n'
                                                 'segment-0001_with_camera_labels.tfrecord\n')
    folder = root / 'waymo_processed_data_v0_5_0' / 'segment-0001_with_camera_labels'
    (folder / 'segment-0001_with_camera_labels.pkl').unlink()
    cfg = config('waymo', root)
    with pytest.warns(UserWarning, match='1 of 2 Waymo segments have no info list'):
        source = build_source(cfg.DATA_CONFIG, root, 'both')
    assert len(source.read(0)[0]) > 1000
    with pytest.raises(SweepError, match='no info list .*segment-0001_with_camera_labels.pkl'):
        source.read(1)
    with pytest.raises(SweepError, match='no info list for any of the 1 segments'):
        build_source(cfg.DATA_CONFIG, root, 'val')
    np.save(folder.parent / 'segment-0000_with_camera_labels' / '0007.npy', np.zeros((3, 6), np.float32))
    source = build_source(cfg.DATA_CONFIG, root, 'train')
    with pytest.raises(SweepError, match='frame 7 is not in segment-0000_with_camera_labels.pkl'):
        source.read(1)
    info = folder.parent / 'segment-0000_with_camera_labels' / 'segment-0000_with_camera_labels.pkl'
    info.write_bytes(info.read_bytes()[:50])  # a damaged info list skips its segment's frames, naming it
    source = build_source(cfg.DATA_CONFIG, root, 'train')
    for index in (0, 1):
        with pytest.raises(SweepError, match=f'{source.path(index)}: {info}: cannot read the info list'):
            source.read(index)


def test_waymo_tfrecord_source_indexes_once_and_caches(roots):
    root = roots['waymo_tfrecord']
    assert sorted(os.listdir(root / 'raw_data')) == ['segment-0000_with_camera_labels.tfrecord',
                                                     'segment-0001_with_camera_labels.tfrecord']
    assert (root / 'ImageSets' / 'val.txt').read_text() == 'segment-0001_with_camera_labels.tfrecord\n'
    cfg = config('waymo_tfrecord', root)
    source = build_source(cfg.DATA_CONFIG, root, 'val')
    tfrecord = root / 'raw_data' / 'segment-0001_with_camera_labels.tfrecord'
    assert source.items == [(tfrecord.relative_to(root), 0)]
    points, origins = source.read(0)
    expected = read_waymo_tfrecord_frame(tfrecord, 0)
    np.testing.assert_array_equal(points, expected[0])
    np.testing.assert_allclose(origins.table[0], WAYMO_TOP_LIDAR_ORIGIN)  # from the frame's TOP extrinsic

    cache = root / 'raw_data_index.json'
    files = json.loads(cache.read_text())['files']
    entry = files[str(tfrecord)]
    assert entry['offsets'] == index_tfrecord(tfrecord)
    entry['offsets'].append(12345)  # a cached index is trusted while the file's size and mtime hold
    cache.write_text(json.dumps({'version': 1, 'files': files}))
    assert [offset for _, offset in build_source(cfg.DATA_CONFIG, root, 'val').items] == [0, 12345]
    os.utime(tfrecord, ns=(0, 0))  # the file changed: indexed again
    assert [offset for _, offset in build_source(cfg.DATA_CONFIG, root, 'val').items] == [0]

    cfg_from_list(['DATA_CONFIG.INDEX_CACHE', str(root / 'elsewhere' / 'index.json')], cfg)
    build_source(cfg.DATA_CONFIG, root, 'val')
    assert (root / 'elsewhere' / 'index.json').is_file()


@pytest.mark.parametrize('name, layout, features, overrides', [
    ('kitti_raw', 'kitti_raw', 4, ['DATA_CONFIG.POINT_CLOUD_RANGE', '[0,-12.8,-3,25.6,12.8,1]',
                                   'DATA_CONFIG.ALLOW_OBJECT_VAL_OVERLAP', 'True']),
    ('semantic_kitti', 'sequences', 4, ['DATA_CONFIG.POINT_CLOUD_RANGE', '[0,-12.8,-3,25.6,12.8,1]',
                                        'DATA_CONFIG.DATA_SPLIT.train', '00,01']),
    ('kitti360', 'kitti360', 4, ['DATA_CONFIG.POINT_CLOUD_RANGE', '[0,-12.8,-3,25.6,12.8,1]']),
    ('nuscenes', 'nuscenes', 5, ['DATA_CONFIG.POINT_CLOUD_RANGE', '[-12.8,-12.8,-5,12.8,12.8,3]']),
    ('once', 'once', 4, ['DATA_CONFIG.POINT_CLOUD_RANGE', '[-12.8,-12.8,-5,12.8,12.8,3]',
                         'DATA_CONFIG.DATA_SPLIT.train', 'raw_large']),
    ('waymo', 'waymo_processed', 5, ['DATA_CONFIG.POINT_CLOUD_RANGE', '[-12.8,-12.8,-2,12.8,12.8,4]']),
    ('waymo_tfrecord', 'waymo_tfrecord', 5, ['DATA_CONFIG.POINT_CLOUD_RANGE', '[-12.8,-12.8,-2,12.8,12.8,4]']),
])
def test_shipped_config_builds_training_samples(roots, name, layout, features, overrides):
    """Each model config's data section, on a smaller box, turns its layout's sweeps into samples."""
    cfg = config(name, roots[layout], *overrides)
    dataset = SweepDataset(cfg.DATA_CONFIG, training=True, seed=0)
    sample = dataset[0]
    assert sample['skipped'] == [] and dataset.point_feature_encoder.num_point_features == features
    assert sample['points'].shape[1] == features and sample['voxels'].shape[2] == features
    assert len(sample['voxels']) > 1000 and sample['queries'].shape == (4096, 3)
    assert np.linalg.norm(sample['sensor_origin']) == pytest.approx(
        0.0 if features == 4 or name == 'nuscenes' else np.linalg.norm(WAYMO_TOP_LIDAR_ORIGIN), abs=1e-5)
    if name.startswith('waymo'):  # queries are cast from several lidars, each from its own (augmented) origin
        assert len(set(sample['query_origin_index'].tolist())) > 1 and sample['ray_origins'].shape == (5, 3)
