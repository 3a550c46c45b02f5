"""The sweep verdict (`sweep_checks.check_sweep`): real sweeps of every layout pass with a wide margin; bytes
that are not a sweep of the layout (wrong record size, float64 data, a PNG, another record width, a handful of
points) are refused with their reason, the same by training and by tools/scan_dataset.py."""
import io
import re
import shutil

import numpy as np
import pytest

from also_pcdet.config import cfg_from_yaml_file
from also_pcdet.datasets import SweepDataset
from also_pcdet.datasets.readers import SweepError
from also_pcdet.datasets.sources import build_source
from also_pcdet.datasets.sweep_checks import (MIN_PLAUSIBLE_SHARE, check_sweep, inside_range, plausible_share,
                                              voxel_count)
from also_pcdet.datasets.synthetic import write_kitti_object
from conftest import REPO, tiny_cfg
from shipped_configs import shipped_config as config
from tools import make_synthetic, scan_dataset

SIZE_REASON = 'truncated: {} bytes is not a multiple of 4 float32 fields (16 bytes per point)'
IMPLAUSIBLE = r'implausible values: only \d+\.\d% of \d+ points are finite, within 1000 m of the sensor .*'
NOT_NUSCENES = ("not nuScenes' 5-float records (x, y, z, intensity, ring with the ring a whole number 0-31)"
                ': its {} bytes read as {} float32 per point')
LAYOUTS = [  # (make_synthetic layout, shipped config, split)
    ('kitti_object', '', 'train'), ('kitti_raw', 'kitti_raw', 'all'), ('sequences', 'semantic_kitti', 'all'),
    ('kitti360', 'kitti360', 'all'), ('nuscenes', 'nuscenes', 'all'), ('once', 'once', 'all'),
    ('waymo_processed', 'waymo', 'train'), ('waymo_tfrecord', 'waymo_tfrecord', 'train'),
    ('lyft', 'dataset_configs/lyft_sweeps', 'all'), ('custom', 'dataset_configs/custom_sweeps', 'train')]


def png_bytes() -> bytes:
    """A real PNG (matplotlib's writer), cut to a multiple of 16 bytes: whole KITTI records by size."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    buffer = io.BytesIO()
    plt.imsave(buffer, np.random.default_rng(0).random((160, 160)), format='png')
    data = buffer.getvalue()
    return data[:len(data) // 16 * 16]


@pytest.mark.parametrize('layout, name, split', LAYOUTS)
def test_real_sweeps_of_every_layout_pass_with_a_wide_margin(tmp_path, layout, name, split):
    make_synthetic.main(['--out', str(tmp_path), '--layout', layout, '--num_sweeps', '2', '--seed', '4'])
    if name.startswith('dataset_configs/'):  # a layout without a model config of its own
        data_cfg = cfg_from_yaml_file(REPO / 'cfgs' / f'{name}.yaml')
    else:
        data_cfg = (config(name, tmp_path) if name else tiny_cfg(tmp_path)).DATA_CONFIG
    source = build_source(data_cfg, tmp_path, split)
    column = source.FEATURES.index('intensity')
    for index in range(len(source)):
        points, origin = source.read(index)
        assert plausible_share(points, origin, column, source.INTENSITY_RANGE or (0, 1)) == 1.0  # limit: 0.99
        assert check_sweep(points, origin, 'sweep', source, data_cfg.POINT_CLOUD_RANGE, data_cfg.VOXEL_SIZE) > 1000


@pytest.fixture(scope='module')
def kitti(tmp_path_factory):
    root = tmp_path_factory.mktemp('kitti')
    write_kitti_object(root, num_sweeps=2, seed=1)
    (root / 'ImageSets' / 'train.txt').write_text('000000\n000001\n')
    return root


@pytest.mark.parametrize('extra', range(1, 16))
def test_a_kitti_bin_that_is_not_whole_records_states_its_real_size(kitti, tmp_path, extra):
    root = tmp_path / 'kitti'
    shutil.copytree(kitti, root)
    path = root / 'training' / 'velodyne' / '000000.bin'
    path.write_bytes(path.read_bytes() + b'\x01' * extra)  # 16k + extra bytes
    source = build_source(tiny_cfg(root).DATA_CONFIG, root, 'train')
    with pytest.raises(SweepError) as err:
        source.read(0)
    assert err.value.path == str(path) and err.value.reason == SIZE_REASON.format(path.stat().st_size)


def garbage_kitti(kitti, root):
    """Train split 0-5: 1 float64 array, 2 a PNG, 3 one point, 4 500 points, 5 2000 copies of one point."""
    shutil.copytree(kitti, root)
    velodyne = root / 'training' / 'velodyne'
    good = np.fromfile(velodyne / '000000.bin', dtype=np.float32).reshape(-1, 4)
    good.astype(np.float64).tofile(velodyne / '000001.bin')
    (velodyne / '000002.bin').write_bytes(png_bytes())
    good[:1].tofile(velodyne / '000003.bin')
    good[:500].tofile(velodyne / '000004.bin')
    np.repeat(np.float32([[5.0, 0.5, -1.0, 0.3]]), 2000, axis=0).tofile(velodyne / '000005.bin')
    (root / 'ImageSets' / 'train.txt').write_text(''.join(f'{i:06d}\n' for i in range(6)))
    return velodyne


GARBAGE_REASONS = [IMPLAUSIBLE, IMPLAUSIBLE, r'only 1 points \(at least 1000; a lidar sweep has tens of thousands\)',
                   r'only 500 points \(at least 1000; a lidar sweep has tens of thousands\)',
                   r'only 1 voxels inside POINT_CLOUD_RANGE \(at least 100\)']


def test_garbage_sweeps_are_skipped_by_training_and_scan_alike(kitti, tmp_path, capsys):
    root = tmp_path / 'kitti'
    velodyne = garbage_kitti(kitti, root)
    dataset = SweepDataset(tiny_cfg(root).DATA_CONFIG, training=True, seed=0)
    sample = dataset[1]  # 1-5 are bad: the sample is sweep 0 again, after the five
    assert sample['frame_id'] == '000000' and len(sample['voxels']) > 1000
    assert [where for where, _ in sample['skipped']] == [str(velodyne / f'{i:06d}.bin') for i in range(1, 6)]
    for (_, reason), pattern in zip(sample['skipped'], GARBAGE_REASONS):
        assert re.fullmatch(pattern, reason), reason

    status = scan_dataset.main(['--cfg_file', str(REPO / 'cfgs' / 'also_pretrain.yaml'), '--set',
                                'DATA_CONFIG.DATA_PATH', str(root), 'DATA_CONFIG.MAX_BAD_FRACTION', '0.9'])
    lines = capsys.readouterr().out.splitlines()
    assert status == 0 and lines[3] == 'bad sweeps: 5 (83.33%; DATA_CONFIG.MAX_BAD_FRACTION 90.00%)'
    assert lines[4:] == [f'  {where}: {reason}' for where, reason in sample['skipped']]


def test_float64_and_png_fail_the_plausibility_share_by_far(kitti, tmp_path):
    velodyne = garbage_kitti(kitti, tmp_path / 'kitti')
    for name in ('000001.bin', '000002.bin'):
        garbage = np.fromfile(velodyne / name, dtype=np.float32).reshape(-1, 4)
        assert plausible_share(garbage, (0, 0, 0), 3, (0.0, 1.0)) < 0.1 < MIN_PLAUSIBLE_SHARE


@pytest.fixture(scope='module')
def nuscenes(tmp_path_factory):
    root = tmp_path_factory.mktemp('nuscenes')
    make_synthetic.main(['--out', str(root), '--layout', 'nuscenes', '--num_sweeps', '1', '--seed', '2'])
    return root


@pytest.mark.parametrize('width, count', [(4, 30000), (4, 30001), (6, 30000), (6, 30001)])
def test_nuscenes_file_with_another_record_width_says_so(nuscenes, tmp_path, width, count):
    """4 or 6 floats per point, whether or not the float count divides by 5: never `truncated`, never read."""
    root = tmp_path / 'nuscenes'
    shutil.copytree(nuscenes, root)
    path = next((root / 'samples' / 'LIDAR_TOP').iterdir())
    records = np.fromfile(path, dtype=np.float32).reshape(-1, 5)[:count]
    columns = [records[:, :4]] if width == 4 else [records, np.full((count, 1), 0.05, np.float32)]
    np.concatenate(columns, axis=1).tofile(path)
    assert (count * width % 5 == 0) == (count == 30000)
    source = build_source(config('nuscenes', root).DATA_CONFIG, root, 'all')
    with pytest.raises(SweepError) as err:
        source.read(0)
    assert err.value.reason == NOT_NUSCENES.format(count * width * 4, width)


def test_truncated_nuscenes_file_is_truncated(nuscenes, tmp_path):
    root = tmp_path / 'nuscenes'
    shutil.copytree(nuscenes, root)
    path = next((root / 'samples' / 'LIDAR_TOP').iterdir())
    path.write_bytes(path.read_bytes()[:-4 * 3])  # cut inside the last record (and a whole number of 16 bytes)
    size = path.stat().st_size
    with pytest.raises(SweepError) as err:
        build_source(config('nuscenes', root).DATA_CONFIG, root, 'all').read(0)
    assert err.value.reason == f'truncated: {size} bytes is not a multiple of 5 float32 fields (20 bytes per point)'


def test_kitti_test_split_reads_the_testing_folder(kitti, tmp_path):
    root = tmp_path / 'kitti'
    shutil.copytree(kitti, root)
    (root / 'testing' / 'velodyne').mkdir(parents=True)
    shutil.copy(root / 'training' / 'velodyne' / '000001.bin', root / 'testing' / 'velodyne' / '000000.bin')
    (root / 'ImageSets' / 'test.txt').write_text('000000\n')
    data_cfg = tiny_cfg(root).DATA_CONFIG
    test = build_source(data_cfg, root, 'test')
    assert test.path(0) == root / 'testing' / 'velodyne' / '000000.bin'
    np.testing.assert_array_equal(test.read(0)[0], build_source(data_cfg, root, 'train').read(1)[0])
    assert build_source(data_cfg, root, 'train').path(0) == root / 'training' / 'velodyne' / '000000.bin'


def test_voxel_count_is_exact_or_a_lower_bound_of_at_least_enough(kitti):
    points = np.fromfile(kitti / 'training' / 'velodyne' / '000000.bin', dtype=np.float32).reshape(-1, 4)
    pc_range, voxel = np.float32([0, -40, -3, 70.4, 40, 1]), np.float32([0.05, 0.05, 0.1])
    xyz = points[inside_range(points[:, :3], pc_range), :3]
    exact = len(np.unique(np.floor((xyz - pc_range[:3]) / voxel).astype(np.int64), axis=0))
    assert voxel_count(xyz, pc_range, voxel) == exact > 10000
    assert 100 <= voxel_count(xyz, pc_range, voxel, enough=100) <= exact
    assert voxel_count(xyz[:150], pc_range, voxel, enough=100) == len(np.unique(
        np.floor((xyz[:150] - pc_range[:3]) / voxel).astype(np.int64), axis=0))
