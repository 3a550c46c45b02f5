"""Official splits: nuScenes and KITTI raw default to their train scenes / drives and validate on the val ones
(lists shipped as package data), `all` stays available with a warning."""
import logging
import re

import pytest

from also_pcdet.datasets.official_splits import shipped_list
from also_pcdet.datasets.readers import SweepError
from also_pcdet.datasets.readers.nuscenes import lidar_scenes
from also_pcdet.datasets.sources import build_source
from also_pcdet.datasets.synthetic.layout_writers import write_kitti_raw, write_nuscenes
from shipped_configs import shipped_config as config


def test_the_shipped_lists_are_the_official_ones():
    train, val = shipped_list('nuscenes_train'), shipped_list('nuscenes_val')
    assert (len(train), len(val)) == (700, 150) and not set(train) & set(val)  # nuScenes trainval: 850 scenes
    assert all(re.fullmatch(r'scene-\d{4}', name) for name in train + val)
    assert train[:3] == ['scene-0001', 'scene-0002', 'scene-0004']
    assert val[:3] == ['scene-0003', 'scene-0012', 'scene-0013']
    mini = shipped_list('nuscenes_mini_train') + shipped_list('nuscenes_mini_val')  # drawn from train and val
    assert len(mini) == 10 and set(mini) < set(train) | set(val) and {'scene-0553', 'scene-0103'} <= set(val)
    drives = shipped_list('kitti_raw_val')
    assert len(drives) == 13 and all(re.fullmatch(r'\d{4}_\d{2}_\d{2}_drive_\d{4}_sync', d) for d in drives)


@pytest.fixture
def warnings_seen(caplog):
    logger = logging.getLogger('also_pcdet')  # train.py's logger does not propagate: listen on it directly
    propagate, logger.propagate = logger.propagate, False
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.propagate = propagate


def test_nuscenes_splits_map_files_to_official_scenes(tmp_path, warnings_seen):
    root = tmp_path / 'nuscenes'
    paths = write_nuscenes(root, 6, seed=1, frames_per_scene=2)  # scenes 0, 2: scene-0001, -0002 (train); 1: -0003
    rel = [str(path.relative_to(root)) for path in paths]
    cfg = config('nuscenes', root)
    assert (cfg.DATA_CONFIG.DATA_SPLIT.train, cfg.DATA_CONFIG.DATA_SPLIT.test) == ('train', 'val')

    def split(name, *overrides):
        source = build_source(config('nuscenes', root, *overrides).DATA_CONFIG, root, name)
        return [str(path) for path in source.items]
    assert split('train') == [rel[0], rel[4]] and split('val') == [rel[2]]
    assert split('train', 'DATA_CONFIG.INCLUDE_SWEEPS', 'True') == [rel[0], rel[4], rel[1], rel[5]]
    assert warnings_seen.records == []
    assert split('all') == [rel[0], rel[2], rel[4]]
    assert [r.levelname for r in warnings_seen.records] == ['WARNING'], warnings_seen.text
    assert 'DATA_SPLIT `all` under' in warnings_seen.text and 'includes the official val scenes' in warnings_seen.text
    with pytest.raises(SweepError, match='no LIDAR_TOP sweep under .* belongs to a nuScenes mini_val scene'):
        split('mini_val')

    last = int(paths[4].name.split('__')[-1].split('.')[0])  # scene 2's only key frame
    log = paths[4].name.split('__')[0]
    near, far = (f'{log}__LIDAR_TOP__{last + gap}.pcd.bin' for gap in (900_000, 1_100_000))
    found = lidar_scenes(root / 'v1.0-trainval', [near, far, 'other__LIDAR_TOP__1.pcd.bin'])
    assert found == ['scene-0002', None, None]  # within 1 s of its scene's key frames; another log

    (root / 'v1.0-trainval' / 'sample.json').write_text('{"not": "a list"}')
    with pytest.raises(SweepError, match=r'v1.0-trainval/sample.json: not a nuScenes sample table'):
        split('train')
    with pytest.raises(SweepError, match=r'v1.0-mini/log.json: nuScenes table not found'):
        split('train', 'DATA_CONFIG.VERSION', 'v1.0-mini')


def test_kitti_raw_splits_follow_kittis_val_drives(tmp_path, warnings_seen):
    root = tmp_path / 'kitti_raw'
    paths = write_kitti_raw(root, 4, seed=1, frames_per_drive=1)  # drive 3 is named after a KITTI val drive
    rel = [str(path.relative_to(root)) for path in paths]
    assert rel[3] == '2011_09_26/2011_09_26_drive_0002_sync/velodyne_points/data/0000000000.bin'
    cfg = config('kitti_raw', root)
    assert (cfg.DATA_CONFIG.DATA_SPLIT.train, cfg.DATA_CONFIG.DATA_SPLIT.test) == ('train', 'val')
    assert [str(p) for p in build_source(cfg.DATA_CONFIG, root, 'val').items] == [rel[3]]
    assert warnings_seen.records == []
    cfg = config('kitti_raw', root, 'DATA_CONFIG.ALLOW_OBJECT_VAL_OVERLAP', 'True')
    assert [str(p) for p in build_source(cfg.DATA_CONFIG, root, 'train').items] == [rel[0], rel[1], rel[2]]
    assert 'ALLOW_OBJECT_VAL_OVERLAP' in warnings_seen.text
    warnings_seen.clear()
    assert len(build_source(cfg.DATA_CONFIG, root, 'all')) == 4
    assert 'KittiRawSweeps DATA_SPLIT `all`' in warnings_seen.text
    (root / rel[3]).parent.parent.parent.rename(root / '2011_09_26' / '2011_09_26_drive_0099_sync')
    with pytest.raises(SweepError, match='no KITTI raw val drive under it'):
        build_source(cfg.DATA_CONFIG, root, 'val')
