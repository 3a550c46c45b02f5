"""KITTI raw `train` without the drives of the KITTI 3D object val frames, found with the object devkit's mapping
(train_rand.txt + train_mapping.txt, written here by hand in the devkit's format)."""
import logging

import pytest

from also_pcdet.datasets.readers import SweepError
from also_pcdet.datasets.sources import build_source
from also_pcdet.datasets.synthetic.layout_writers import write_kitti_raw
from shipped_configs import shipped_config as config

# train_mapping.txt lines as the devkit writes them (date, drive, raw frame); the last drive is not on disk
MAPPING = ['2011_09_26 2011_09_26_drive_0001_sync 0000000000',
           '2011_09_28 2011_09_28_drive_0002_sync 0000000001',
           '2011_09_29 2011_09_29_drive_0003_sync 0000000000',
           '2011_09_28 2011_09_28_drive_0002_sync 0000000000',
           '2011_10_03 2011_10_03_drive_0005_sync 0000000001',
           '2011_09_26 2011_09_26_drive_0093_sync 0000000042']
RAND = [3, 1, 6, 2, 5, 4]  # object frame i is line RAND[i] (1-based) of train_mapping.txt
VAL = ['000001', '000004', '000002']  # lines 1, 5, 6: drives 0001, 0005 and 0093


@pytest.fixture
def raw(tmp_path):
    """Five drives of two sweeps (the fourth, 2011_09_26_drive_0002_sync, is a KITTI depth val drive), an
    object devkit mapping folder and an object val split."""
    root = tmp_path / 'kitti_raw'
    paths = write_kitti_raw(root, 10, seed=1, frames_per_drive=2)
    mapping = tmp_path / 'devkit_object' / 'mapping'
    mapping.mkdir(parents=True)
    (mapping / 'train_mapping.txt').write_text(''.join(f'{line}\n' for line in MAPPING))
    (mapping / 'train_rand.txt').write_text(','.join(map(str, RAND)) + '\n')
    (tmp_path / 'val.txt').write_text(''.join(f'{frame}\n' for frame in VAL))
    return root, paths, mapping, tmp_path / 'val.txt'


def drives(source):
    return sorted({path.parts[1] for path in source.items})


@pytest.fixture
def logged(caplog):
    logger = logging.getLogger('also_pcdet')  # train.py's logger does not propagate: listen on it directly
    logger.addHandler(caplog.handler)
    with caplog.at_level(logging.INFO, logger='also_pcdet.datasets'):
        yield caplog
    logger.removeHandler(caplog.handler)


def test_object_val_drives_are_left_out_of_the_default_train(raw, logged):
    root, paths, mapping, val = raw
    cfg = config('kitti_raw', root, 'DATA_CONFIG.OBJECT_DEVKIT_MAPPING', str(mapping),
                 'DATA_CONFIG.OBJECT_VAL_SPLIT', str(val))
    train = build_source(cfg.DATA_CONFIG, root, cfg.DATA_CONFIG.DATA_SPLIT.train)
    assert drives(train) == ['2011_09_28_drive_0002_sync', '2011_09_29_drive_0003_sync']
    assert [str(p) for p in train.items] == [str(p.relative_to(root)) for p in paths[2:6]]
    assert 'left out 2 drives (4 sweeps) holding 2 of the 3 KITTI object frames' in logged.text
    # val (KITTI's depth val drives), `all` and drive lists are what they name
    assert drives(build_source(cfg.DATA_CONFIG, root, 'val')) == ['2011_09_26_drive_0002_sync']
    assert len(build_source(cfg.DATA_CONFIG, root, 'all')) == 10


def test_object_val_without_the_mapping_stops_with_what_to_set(raw):
    root, _, mapping, val = raw
    with pytest.raises(SweepError, match=r'OBJECT_DEVKIT_MAPPING .*devkit_object/mapping folder \(train_rand.txt \+ '
                                         r'train_mapping.txt\).*OBJECT_VAL_SPLIT .*ImageSets/val.txt.*'
                                         r'ALLOW_OBJECT_VAL_OVERLAP: True'):
        build_source(config('kitti_raw', root).DATA_CONFIG, root, 'train')
    with pytest.raises(SweepError, match=r'OBJECT_VAL_SPLIT \(the object split, ImageSets/val.txt\) is not set'):
        build_source(config('kitti_raw', root, 'DATA_CONFIG.OBJECT_DEVKIT_MAPPING', str(mapping)).DATA_CONFIG,
                     root, 'train')
    allowed = config('kitti_raw', root, 'DATA_CONFIG.ALLOW_OBJECT_VAL_OVERLAP', 'True')
    assert len(build_source(allowed.DATA_CONFIG, root, 'train')) == 8  # every drive but the depth val one


def test_object_val_bad_mapping_files_are_named(raw):
    root, _, mapping, val = raw
    cfg = config('kitti_raw', root, 'DATA_CONFIG.OBJECT_DEVKIT_MAPPING', str(mapping),
                 'DATA_CONFIG.OBJECT_VAL_SPLIT', str(val))
    (mapping / 'train_rand.txt').write_text('3,1,9\n')
    with pytest.raises(SweepError, match=r'train_rand.txt: names line 9 of train_mapping.txt, which has 6 lines'):
        build_source(cfg.DATA_CONFIG, root, 'train')
    (mapping / 'train_rand.txt').write_text('3,1,6,2,5,4\n')
    val.write_text('000001\n000006\n')
    with pytest.raises(SweepError, match=r"val.txt: not object frame ids below 6 .*\['000006'\]"):
        build_source(cfg.DATA_CONFIG, root, 'train')
    (mapping / 'train_mapping.txt').write_text('2011_09_26 drive_1 0000000000\n')
    with pytest.raises(SweepError, match=r'train_mapping.txt: expected lines `<date> <date>_drive_<NNNN>_sync'):
        build_source(cfg.DATA_CONFIG, root, 'train')
    (mapping / 'train_mapping.txt').unlink()
    with pytest.raises(SweepError, match=r'train_mapping.txt: not found \(the KITTI object devkit has it as '
                                         r'devkit_object/mapping/train_mapping.txt\)'):
        build_source(cfg.DATA_CONFIG, root, 'train')
