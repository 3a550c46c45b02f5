"""nuScenes multi-sweep input (NuScenesMultiSweeps): OpenPCDet's info pkl and sweep merge, on synthetic scenes
the ego drives through (tools/make_synthetic.py --layout nuscenes_infos); queries from the key frame only."""
import pickle
from datetime import datetime

import numpy as np
import pytest

from also_pcdet.datasets import SweepDataset
from also_pcdet.datasets.readers import SweepError
from also_pcdet.datasets.sources import build_source
from also_pcdet.datasets.synthetic.layout_writers import nuscenes_drive_position
from shipped_configs import shipped_config as config
from tools import make_synthetic

FRAMES = 20  # one scene: key frames 0 and 10, sweeps 1-9 and 11-19
SMALL_BOX = ['DATA_CONFIG.POINT_CLOUD_RANGE', '[-12.8,-12.8,-5,12.8,12.8,3]']


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp('nuscenes_infos')
    make_synthetic.main(['--out', str(out), '--layout', 'nuscenes_infos', '--num_sweeps', str(FRAMES), '--seed', '4'])
    return out


def records(path):
    return np.fromfile(path, dtype=np.float32).reshape(-1, 5)


def test_info_pkl_has_openpcdets_sweep_entries(root):
    infos = pickle.loads((root / 'nuscenes_infos_10sweeps_train.pkl').read_bytes())
    assert [info['lidar_path'].split('/')[0] for info in infos] == ['samples', 'samples']
    first, second = infos
    assert len(first['sweeps']) == len(second['sweeps']) == 9
    assert first['sweeps'][0]['transform_matrix'] is None and first['sweeps'][0]['lidar_path'] == first['lidar_path']
    lags = [sweep['time_lag'] for sweep in second['sweeps']]
    np.testing.assert_allclose(lags, 0.05 * np.arange(1, 10))
    for k, sweep in enumerate(second['sweeps'], start=1):
        assert sweep['lidar_path'].startswith('sweeps/LIDAR_TOP/') and (root / sweep['lidar_path']).is_file()
        np.testing.assert_allclose(sweep['transform_matrix'][:3, 3], [-0.1 * k, 0, 0], atol=1e-12)


def test_merge_moves_past_sweeps_into_the_key_frame_with_their_time_lag(root):
    cfg = config('nuscenes_10sweeps', root)
    source = build_source(cfg.DATA_CONFIG, root, cfg.DATA_CONFIG.DATA_SPLIT.train)
    info = source.items[1]
    key = records(root / info['lidar_path'])
    past = [records(root / sweep['lidar_path']) for sweep in info['sweeps']]
    points, origins = source.read(1)
    assert len(points) == len(key) + sum(len(p) for p in past)
    np.testing.assert_array_equal(points[:len(key), :3], key[:, :3])
    np.testing.assert_allclose(points[:, 3], np.concatenate([key] + past)[:, 3] / 255.0)
    start = len(key)
    for k, sweep in enumerate(past, start=1):  # frame 10 - k, seen from where the ego was then (the writer's truth)
        shift = nuscenes_drive_position(10 - k, FRAMES) - nuscenes_drive_position(10, FRAMES)
        np.testing.assert_allclose(points[start:start + len(sweep), :3], sweep[:, :3] + shift, atol=1e-5)
        np.testing.assert_allclose(points[start:start + len(sweep), 4], 0.05 * k, rtol=1e-6)
        start += len(sweep)
    assert not points[:len(key), 4].any()
    assert origins.table.tolist() == [[0.0, 0.0, 0.0]]
    assert (origins.index[:len(key)] == 0).all() and (origins.index[len(key):] == -1).all()

    one = config('nuscenes_10sweeps', root, 'DATA_CONFIG.MAX_SWEEPS', '1')
    single, _ = build_source(one.DATA_CONFIG, root, one.DATA_CONFIG.DATA_SPLIT.train).read(1)
    np.testing.assert_array_equal(single, points[:len(key)])


def test_ego_points_of_past_sweeps_are_dropped(root, tmp_path):
    """OpenPCDet drops past-sweep points with |x| < 1 m and |y| < 1 m (its own car); the key frame keeps them."""
    cfg = config('nuscenes_10sweeps', root, 'DATA_CONFIG.MAX_SWEEPS', '2')
    source = build_source(cfg.DATA_CONFIG, root, cfg.DATA_CONFIG.DATA_SPLIT.train)
    (sweep,) = source.past_sweeps(1)  # the one past sweep `read` draws (MAX_SWEEPS 2)
    sweep_path = root / sweep['lidar_path']
    original = sweep_path.read_bytes()
    try:
        ego = np.array([[0.5, -0.9, -1.0, 10.0, 3.0], [1.2, 0.0, -1.0, 10.0, 3.0]], dtype=np.float32)
        sweep_path.write_bytes(original + ego.tobytes())
        points, _ = source.read(1)
        moved = sweep['transform_matrix'] @ [1.2, 0.0, -1.0, 1.0]
        np.testing.assert_allclose(points[-1, :3], moved[:3], atol=1e-6)  # kept, moved into the key frame
        assert len(points) == len(records(root / source.items[1]['lidar_path'])) + len(records(sweep_path)) - 1
    finally:
        sweep_path.write_bytes(original)


def test_queries_come_from_key_frame_points_only(root):
    """Every 'in' query lies within BAND behind a key-frame point on that point's ray from the key lidar; the
    merged past sweeps are network input with their time lag."""
    cfg = config('nuscenes_10sweeps', root, *SMALL_BOX, 'DATA_CONFIG.AUGMENTATION.ENABLED', 'False')
    dataset = SweepDataset(cfg.DATA_CONFIG, training=True, seed=0)
    sample = dataset[1]
    assert sample['skipped'] == [] and set(sample['query_origin_index'].tolist()) == {0}
    lags = np.unique(np.round(sample['points'][:, 4], 3))
    np.testing.assert_allclose(lags, 0.05 * np.arange(10), atol=1e-6)
    assert sample['voxels'].shape[2] == 5 and len(np.unique(np.round(sample['voxels'][:, 0, 4], 3))) > 1

    key = records(root / dataset.source.items[1]['lidar_path'])[:, :3].astype(np.float64)
    inside = sample['queries'][sample['query_occupancy'] > 0.5][:300].astype(np.float64)
    key_dir = key / np.linalg.norm(key, axis=1, keepdims=True)
    for query in inside:
        along = key_dir @ query  # distance along each key ray
        off_ray = np.linalg.norm(query - along[:, None] * key_dir, axis=1)
        behind = along - np.linalg.norm(key, axis=1)
        assert ((off_ray < 1e-3) & (behind > -1e-4) & (behind < 0.1 + 1e-4)).any(), query


def test_missing_or_wrong_info_file_is_named(root, tmp_path):
    cfg = config('nuscenes_10sweeps', root)
    with pytest.raises(SweepError, match=r'nowhere.pkl: the info pkl \(OpenPCDet writes it with create_nuscenes_infos\) '
                                         r'not found'):
        build_source(cfg.DATA_CONFIG, root, 'nowhere.pkl')
    (tmp_path / 'code.pkl').write_bytes(pickle.dumps([{'lidar_path': 'x', 'sweeps': [], 'when': datetime.now()}]))
    with pytest.raises(SweepError, match='code.pkl: cannot read the info pkl .*refusing to load datetime.datetime'):
        build_source(cfg.DATA_CONFIG, root, str(tmp_path / 'code.pkl'))  # a pkl is code: only values load
    (tmp_path / 'bad.pkl').write_bytes(pickle.dumps([{'token': 'x'}]))
    with pytest.raises(SweepError, match="bad.pkl: not an OpenPCDet nuScenes info list .*KeyError: 'lidar_path'"):
        build_source(cfg.DATA_CONFIG, root, str(tmp_path / 'bad.pkl'))
