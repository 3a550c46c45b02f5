"""Bad sweeps are skipped with one warning naming the file and its reason, counted, reported at epoch end and
in tensorboard; training never crashes on one, and stops with a clear error past MAX_BAD_FRACTION."""
import pickle
import json
import re
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from also_pcdet.config import ConfigError
from also_pcdet.engine.checkpoint import load_checkpoint
from also_pcdet.datasets import SweepDataset
from also_pcdet.datasets.readers import SweepError
from also_pcdet.datasets import sweep_checks, sweep_dataset
from also_pcdet.datasets.readers.tfrecord_io import index_tfrecord
from also_pcdet.datasets.sources import build_source
from also_pcdet.datasets.synthetic.layout_writers import write_waymo_tfrecord_sweeps
from conftest import REPO, tiny_cfg
from shipped_configs import shipped_config as config
from tools import train
from train_cli import FAST_OVERRIDES, scalars


SMALL_BOX = ['DATA_CONFIG.POINT_CLOUD_RANGE', '[0,-3.2,-3,6.4,3.2,1]']  # 128 x 128 x 40 cells: ~5k voxels a sweep


def truncate(path):
    path.write_bytes(path.read_bytes()[:-6])


def empty(path):
    path.write_bytes(b'')


def poison(path):
    points = np.fromfile(path, dtype=np.float32).reshape(-1, 4)
    points[10, 0], points[20, 2] = np.nan, np.inf
    points.tofile(path)


def move_away(path):
    """Every point 500 m out: outside the range whatever the augmentation's rotation."""
    points = np.fromfile(path, dtype=np.float32).reshape(-1, 4)
    points[:, :3] += (500.0, 500.0, 0.0)
    points.tofile(path)


def delete(path):
    path.unlink()


def make_unreadable(path):
    path.unlink()
    path.mkdir()  # reading a directory fails like an unreadable file (root ignores permission bits)


CASES = [(truncate, r'truncated: \d+ bytes is not a multiple of 4 float32 fields \(16 bytes per point\)'),
         (empty, r'empty sweep \(0 bytes\)'),
         (poison, r'2 of \d+ points have NaN/inf values'),
         (move_away, 'no point inside POINT_CLOUD_RANGE'),
         (delete, 'cannot read: No such file or directory'),
         (make_unreadable, 'cannot read: Is a directory')]


def kitti_with(synthetic_kitti, root, frames, damage):
    """A copy of the synthetic KITTI sweeps whose train split is `frames`, with damage[frame](path) applied."""
    shutil.copytree(synthetic_kitti, root)
    (root / 'ImageSets' / 'train.txt').write_text(''.join(f'{f:06d}\n' for f in frames))
    for frame, spoil in damage.items():
        spoil(root / 'training' / 'velodyne' / f'{frame:06d}.bin')
    return root


def test_each_bad_kitti_sweep_is_skipped_with_its_reason(synthetic_kitti, tmp_path):
    root = kitti_with(synthetic_kitti, tmp_path / 'kitti', range(8),
                      {frame: spoil for frame, (spoil, _) in enumerate(CASES, start=1)})
    dataset = SweepDataset(tiny_cfg(root).DATA_CONFIG, training=True, seed=0)
    assert dataset[0]['skipped'] == []
    sample = dataset[1]  # sweeps 1-6 are bad: the sample is sweep 7, the six are reported
    assert sample['frame_id'] == '000007' and len(sample['voxels']) > 0
    assert [location for location, _ in sample['skipped']] == [
        str(root / 'training' / 'velodyne' / f'{frame:06d}.bin') for frame in range(1, 7)]
    for (_, reason), (_, pattern) in zip(sample['skipped'], CASES):
        assert re.fullmatch(pattern, reason), reason


def test_truncated_nuscenes_record_and_all_nlz_waymo_frame(tmp_path):
    nuscenes = tmp_path / 'nuscenes'
    (nuscenes / 'samples' / 'LIDAR_TOP').mkdir(parents=True)
    bad = nuscenes / 'samples' / 'LIDAR_TOP' / 'n015-2018-07-24-11-22-45+0800__LIDAR_TOP__1532402927647951.pcd.bin'
    np.zeros((11, 4), np.float32).tofile(bad)  # 176 bytes: whole KITTI points, not whole nuScenes records
    source = build_source(config('nuscenes', nuscenes).DATA_CONFIG, nuscenes, 'all')
    with pytest.raises(SweepError, match=r'truncated: 176 bytes is not a multiple of 5 float32 fields') as err:
        source.read(0)
    assert err.value.path == str(bad)

    waymo = tmp_path / 'waymo'
    folder = waymo / 'waymo_processed_data_v0_5_0' / 'segment-1_with_camera_labels'
    folder.mkdir(parents=True)
    (waymo / 'ImageSets').mkdir()
    (waymo / 'ImageSets' / 'train.txt').write_text('segment-1_with_camera_labels.tfrecord\n')
    frame = np.random.default_rng(0).uniform(-10, 10, (5000, 6)).astype(np.float32)
    frame[:, 3] = np.abs(frame[:, 3])  # Waymo's raw intensity is never negative
    frame[:, 5] = 1.0  # every point inside a no-label zone: nothing is left once they are dropped
    np.save(folder / '0000.npy', frame)
    frame[:, 5] = -1.0
    np.save(folder / '0001.npy', frame)
    infos = [{'point_cloud': {'sample_idx': i}, 'num_points_of_each_lidar': [5000, 0, 0, 0, 0]} for i in (0, 1)]
    (folder / 'segment-1_with_camera_labels.pkl').write_bytes(pickle.dumps(infos))
    cfg = config('waymo', waymo, 'DATA_CONFIG.POINT_CLOUD_RANGE', '[-12.8,-12.8,-2,12.8,12.8,4]',
                 'DATA_CONFIG.SAMPLE_INTERVAL.train', '1', 'DATA_CONFIG.DISABLE_NLZ_FLAG_ON_POINTS', 'False')
    sample = SweepDataset(cfg.DATA_CONFIG, training=True)[0]
    assert sample['skipped'] == [(str(folder / '0000.npy'), 'empty sweep (0 points)')]
    assert sample['frame_id'].endswith('0001.npy')


def test_corrupt_tfrecord_record_and_header(tmp_path):
    root = tmp_path / 'waymo'
    write_waymo_tfrecord_sweeps(root, 4, seed=5, max_frames_per_segment=2)  # 2 segments of 2 frames
    train_file = root / 'raw_data' / 'segment-0000_with_camera_labels.tfrecord'
    data = bytearray(train_file.read_bytes())
    data[12 + 100] ^= 0xFF  # a byte of the first record's data
    train_file.write_bytes(bytes(data))
    cfg = config('waymo_tfrecord', root, 'DATA_CONFIG.POINT_CLOUD_RANGE', '[-12.8,-12.8,-2,12.8,12.8,4]',
                 'DATA_CONFIG.SAMPLE_INTERVAL.train', '1')
    sample = SweepDataset(cfg.DATA_CONFIG, training=True)[0]
    assert sample['skipped'] == [(f'{train_file} (record at offset 0)', 'bad data CRC in record at offset 0')]

    val_file = root / 'raw_data' / 'segment-0001_with_camera_labels.tfrecord'
    data = bytearray(val_file.read_bytes())
    data[0] ^= 0xFF  # the first record's length: the file cannot be indexed
    val_file.write_bytes(bytes(data))
    source = build_source(cfg.DATA_CONFIG, root, 'val')
    assert len(source) == 1
    with pytest.raises(SweepError, match='damaged after 0 intact records, the rest is lost: bad length CRC at '
                                         'offset 0'):
        source.read(0)


@pytest.fixture(scope='module')
def waymo_tfrecords(tmp_path_factory):
    """Two raw Waymo segments of three frames each."""
    root = tmp_path_factory.mktemp('waymo')
    write_waymo_tfrecord_sweeps(root, 6, seed=5, max_frames_per_segment=3)
    return root


def cut_mid_record(data, offsets):
    return data[:offsets[2] + 40]


def append_garbage(data, offsets):
    return data + bytes(range(200))


def damage_third_length(data, offsets):
    data = bytearray(data)
    data[offsets[2] + 3] ^= 0x10  # the length field of record 2: its CRC no longer matches
    return bytes(data)


@pytest.mark.parametrize('damage, intact, reason', [
    (cut_mid_record, 2, r'truncated record at offset {o2}: needs \d+ bytes, file has {size}'),
    (append_garbage, 3, r'bad length CRC at offset {end}'),
    (damage_third_length, 2, r'bad length CRC at offset {o2}'),
])
def test_a_damaged_tfrecord_keeps_its_records_before_the_damage(waymo_tfrecords, tmp_path, damage, intact, reason):
    """Every intact record before the damage is a sweep; the damaged rest of the file is one bad item,
    skipped with its reason."""
    root = tmp_path / 'waymo'
    shutil.copytree(waymo_tfrecords, root)
    path = root / 'raw_data' / 'segment-0000_with_camera_labels.tfrecord'
    original = path.read_bytes()
    offsets = index_tfrecord(path)
    path.write_bytes(damage(original, offsets))
    cfg = config('waymo_tfrecord', root, 'DATA_CONFIG.POINT_CLOUD_RANGE', '[-12.8,-12.8,-2,12.8,12.8,4]',
                 'DATA_CONFIG.SAMPLE_INTERVAL.train', '1')
    dataset = SweepDataset(cfg.DATA_CONFIG, training=True)
    name = path.relative_to(root)
    assert dataset.source.items == [(name, offset) for offset in offsets[:intact]] + [(name, None)]
    sample = dataset[intact]  # the damaged rest: skipped, then the first record again
    assert sample['frame_id'].endswith('@0') and len(sample['skipped']) == 1
    (where, why), = sample['skipped']
    pattern = reason.format(o2=offsets[2], size=path.stat().st_size, end=len(original))
    assert where == str(path)
    assert re.fullmatch(rf'damaged after {intact} intact records, the rest is lost: {pattern}', why)


def test_an_index_cache_of_the_wrong_shape_is_rebuilt(waymo_tfrecords, tmp_path):
    root = tmp_path / 'waymo'
    shutil.copytree(waymo_tfrecords, root)
    cfg = config('waymo_tfrecord', root)
    expected = build_source(cfg.DATA_CONFIG, root, 'train').items
    cache = root / 'raw_data_index.json'
    tfrecord = str(root / 'raw_data' / 'segment-0000_with_camera_labels.tfrecord')
    stamp = json.loads(cache.read_text())['files'][tfrecord]['stamp']
    for wrong in ([1, 2], {'version': 1, 'files': []}, {'version': 1, 'files': {tfrecord: [0, 1]}},
                  {'version': 1, 'files': {tfrecord: {'stamp': stamp, 'offsets': 'abc'}}},
                  {'version': 1, 'files': {tfrecord: {'stamp': stamp, 'offsets': [0, -5]}}},
                  {'version': 1, 'files': {tfrecord: {'stamp': stamp}}}, 'null', {'version': 1}):
        cache.write_text(json.dumps(wrong))
        assert build_source(cfg.DATA_CONFIG, root, 'train').items == expected, wrong
        assert json.loads(cache.read_text())['files'][tfrecord]['offsets'] == [o for _, o in expected]


@pytest.fixture
def two_bad_of_three(synthetic_kitti, tmp_path):
    """Train split 1, 2, 4; sweep 2 is truncated and sweep 4 has NaN coordinates."""
    return kitti_with(synthetic_kitti, tmp_path / 'kitti', (1, 2, 4), {2: truncate, 4: poison})


def run_train(root, out_root, max_bad_fraction, epochs=1):
    """One batch an epoch: the three sweeps, the bad ones replaced by the good one."""
    return train.main(['--cfg_file', 'cfgs/also_pretrain.yaml', '--workers', '0', '--epochs', str(epochs),
                       '--batch_size', '4', '--fix_random_seed', '--output_root', str(out_root), '--set',
                       *FAST_OVERRIDES, *SMALL_BOX, 'DATA_CONFIG.DATA_PATH', str(root),
                       'DATA_CONFIG.MAX_BAD_FRACTION', str(max_bad_fraction)])


@pytest.mark.slow
def test_training_skips_counts_and_reports_bad_sweeps_once_across_resumes(two_bad_of_three, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    # tensorboardX names event files by the second: both runs start in the same one, as a quick resume may
    monkeypatch.setattr('tensorboardX.event_file_writer.time', SimpleNamespace(time=lambda: 1_700_000_000.0))
    out = run_train(two_bad_of_three, tmp_path / 'out', max_bad_fraction=0.7)  # 2 of 3 allowed
    assert (out / 'ckpt' / 'checkpoint_epoch_1.pth').is_file()  # the epoch ran to its end
    log = next(out.glob('train_*.log')).read_text()
    velodyne = two_bad_of_three / 'training' / 'velodyne'
    for frame, reason in ((2, 'truncated: '), (4, 'NaN/inf values')):
        warnings = [line for line in log.splitlines() if f'skipped sweep {velodyne / f"{frame:06d}.bin"}: ' in line]
        assert len(warnings) == 1 and 'WARNING' in warnings[0] and reason in warnings[0]
    assert 'epoch 1: 1 iterations in all, 2 newly skipped sweeps' in log
    assert scalars(out / 'tensorboard')['data/skipped_sweeps'] == [(1, 2.0)]
    known = load_checkpoint(out / 'ckpt' / 'checkpoint_epoch_1.pth')['bad_sweeps']  # weights_only
    assert sorted(known) == [str(velodyne / '000002.bin'), str(velodyne / '000004.bin')]

    run_train(two_bad_of_three, tmp_path / 'out', max_bad_fraction=0.7, epochs=2)  # resumes after epoch 1
    logs = [path.read_text() for path in out.glob('train_*.log')]  # one per run, or one if in the same second
    resumed = next(text for text in logs if 'resumed from' in text).split('resumed from', 1)[1]
    assert resumed.startswith(f' {out / "ckpt" / "checkpoint_epoch_1.pth"}: epoch 1, iteration 1, 0 batches into '
                              f'the next epoch, 2 unusable sweeps known')
    assert 'WARNING  skipped sweep' not in resumed and 'epoch 2: 2 iterations in all, 0 newly skipped sweeps' in resumed
    assert scalars(out / 'tensorboard')['data/skipped_sweeps'] == [(1, 2.0), (2, 2.0)]
    final = load_checkpoint(out / 'ckpt' / 'checkpoint_epoch_2.pth')
    assert final['bad_sweeps'] == known and final['sweeps_read'] > 6


def test_training_stops_past_max_bad_fraction(two_bad_of_three, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(RuntimeError, match=r'^2 unusable sweeps of \d+ read \(~3 per epoch on this process\): more '
                                           r'than DATA_CONFIG.MAX_BAD_FRACTION=0.25 allows; first: .*00000[24]\.bin: '):
        run_train(two_bad_of_three, tmp_path / 'out', max_bad_fraction=0.25)
    assert not list((tmp_path / 'out').rglob('checkpoint_epoch_*.pth'))


def test_max_bad_fraction_zero_stops_at_the_first_bad_sweep(synthetic_kitti, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    root = kitti_with(synthetic_kitti, tmp_path / 'kitti', (1, 2, 3, 4, 6, 7, 8), {8: truncate})
    with pytest.raises(RuntimeError, match=r'^1 unusable sweeps of \d+ read \(~7 per epoch on this process\): more '
                                           r'than DATA_CONFIG.MAX_BAD_FRACTION=0.0 allows; first: .*000008\.bin: '
                                           r'truncated'):
        run_train(root, tmp_path / 'out', max_bad_fraction=0.0)


def test_a_batch_with_a_handful_of_voxels_never_reaches_the_network(synthetic_kitti, tmp_path, monkeypatch):
    """With the sweep checks switched off, a one-point sweep reaches the trainer, which skips its step
    instead of crashing in BatchNorm ("Expected more than 1 value per channel")."""
    monkeypatch.chdir(REPO)
    root = kitti_with(synthetic_kitti, tmp_path / 'kitti', (1,), {})
    np.repeat(np.float32([[3.0, 0.5, -1.0, 0.3]]), 2000, axis=0).tofile(root / 'training' / 'velodyne' / '000001.bin')
    monkeypatch.setattr(sweep_checks, 'MIN_VOXELS', 1)
    monkeypatch.setattr(sweep_dataset, 'MIN_VOXELS', 1)
    out = train.main(['--cfg_file', 'cfgs/also_pretrain.yaml', '--workers', '0', '--epochs', '1', '--batch_size',
                      '1', '--output_root', str(tmp_path / 'out'), '--set', *FAST_OVERRIDES, *SMALL_BOX,
                      'DATA_CONFIG.DATA_PATH', str(root), 'DATA_CONFIG.AUGMENTATION.ENABLED', 'False'])
    log = next(out.glob('train_*.log')).read_text()
    assert 'iteration 0: a batch with 1 voxels (at least 100 on every process); step skipped' in log
    assert (out / 'ckpt' / 'checkpoint_epoch_1.pth').is_file()


def test_bad_config_fails_before_training(synthetic_kitti, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    out_root = tmp_path / 'out'
    with pytest.raises(ConfigError, match=f"DATA_CONFIG.DATA_PATH '{tmp_path / 'nowhere'}' does not exist"):
        run_train(tmp_path / 'nowhere', out_root, 0.05)
    cfg_file = tmp_path / 'typo.yaml'
    cfg_file.write_text('_BASE_CONFIG_: cfgs/also_pretrain.yaml\nOPTIMIZATION:\n    LEARNING_RATE: 0.01\n')
    with pytest.raises(ConfigError, match='unknown key OPTIMIZATION.LEARNING_RATE'):
        train.main(['--cfg_file', str(cfg_file), '--set', 'DATA_CONFIG.DATA_PATH', str(synthetic_kitti)])
    with pytest.raises(SweepError, match='ImageSets/nosplit.txt: split file not found'):
        train.main(['--cfg_file', 'cfgs/also_pretrain.yaml', '--output_root', str(out_root), '--workers', '0',
                    '--set', 'DATA_CONFIG.DATA_PATH', str(synthetic_kitti), 'DATA_CONFIG.DATA_SPLIT.train', 'nosplit'])
    assert not list(out_root.rglob('*.pth')) and not list(out_root.rglob('events.out.tfevents.*'))
