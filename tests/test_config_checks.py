"""check_config: the schema (unknown keys, types, missing keys), the grid, the features and the data path,
and the shipped configs against the stock OpenPCDet configs they feed."""
import json

import pytest

from also_pcdet.config import ConfigError, cfg_from_yaml_file
from also_pcdet.config_checks import check_config
from also_pcdet.config_schema import DATASET_KEYS
from also_pcdet.datasets.readers.waymo import WAYMO_LIDAR_ORIGINS, WAYMO_TOP_LIDAR_ORIGIN
from also_pcdet.datasets.sources import SOURCES
from conftest import REPO

KITTI = ([0, -40, -3, 70.4, 40, 1], [0.05, 0.05, 0.1], ['x', 'y', 'z', 'intensity'])
WAYMO = ([-75.2, -75.2, -2, 75.2, 75.2, 4], [0.1, 0.1, 0.15], ['x', 'y', 'z', 'intensity', 'elongation'])
NUSCENES = ([-51.2, -51.2, -5.0, 51.2, 51.2, 3.0], [0.1, 0.1, 0.2], ['x', 'y', 'z', 'intensity', 'timestamp'])
STOCK_FACTS = {c['config']: c for c in json.loads((REPO / 'tests' / 'facts' / 'stock_backbones.json').read_text())['configs']}


def stock(config):
    """(range, voxel, features, 3-D backbone) of a stock OpenPCDet config, from the facts file."""
    facts = STOCK_FACTS[config]
    return (facts['point_cloud_range'], facts['voxel_size'], facts['used_feature_list'], facts['BACKBONE_3D']['NAME'])


# config -> (range, voxel, features, 3-D backbone) of the stock OpenPCDet detector config it feeds
STOCK = {
    'also_pretrain': KITTI + ('VoxelBackBone8x',),             # kitti_models/second, pv_rcnn
    'also_pretrain_kitti_raw': KITTI + ('VoxelBackBone8x',),
    'also_pretrain_semantic_kitti': KITTI + ('VoxelBackBone8x',),
    'also_pretrain_kitti360': stock('kitti_models/second.yaml'),
    'also_pretrain_nuscenes_10sweeps': stock('nuscenes_models/cbgs_voxel01_res3d_centerpoint.yaml'),
    'also_pretrain_once': stock('once_models/second.yaml'),
    'also_pretrain_once_centerpoint': stock('once_models/centerpoint.yaml'),
    'also_pretrain_waymo': WAYMO + ('VoxelResBackBone8x',),    # waymo_models/centerpoint
    'also_pretrain_waymo_second': WAYMO + ('VoxelBackBone8x',),  # waymo_models/second, pv_rcnn
    'also_pretrain_waymo_tfrecord': WAYMO + ('VoxelResBackBone8x',),
    'also_pretrain_nuscenes': NUSCENES + ('VoxelResBackBone8x',),  # nuscenes_models/cbgs_voxel01_res3d_centerpoint
}


def load(name, data_path):
    cfg = cfg_from_yaml_file(REPO / 'cfgs' / f'{name}.yaml')
    cfg.DATA_CONFIG.DATA_PATH = str(data_path)
    for source in cfg.DATA_CONFIG.get('SOURCES', []):  # also_pretrain_multi
        source['DATA_PATH'] = str(data_path)
    return cfg


def check_ok(cfg) -> bool:
    check_config(cfg)
    return True


def problems(cfg) -> str:
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    return str(err.value)


@pytest.mark.parametrize('path', sorted((REPO / 'cfgs').glob('*.yaml')), ids=lambda p: p.stem)
def test_every_shipped_config_passes(path, tmp_path):
    check_config(load(path.stem, tmp_path))


@pytest.mark.parametrize('name', sorted(STOCK))
def test_shipped_configs_match_the_stock_detectors(name, tmp_path):
    cfg = load(name, tmp_path)
    pc_range, voxel, features, backbone = STOCK[name]
    data = cfg.DATA_CONFIG
    assert (data.POINT_CLOUD_RANGE, data.VOXEL_SIZE, data.POINT_FEATURE_ENCODING.used_feature_list) == \
        (pc_range, voxel, features)
    assert cfg.MODEL.BACKBONE_3D.NAME == backbone and cfg.MODEL.MAP_TO_BEV.NUM_BEV_FEATURES == 256
    bev = cfg.MODEL.BACKBONE_2D
    assert (bev.LAYER_NUMS, bev.LAYER_STRIDES, bev.NUM_FILTERS, bev.UPSAMPLE_STRIDES, bev.NUM_UPSAMPLE_FILTERS) == \
        ([5, 5], [1, 2], [128, 256], [1, 2], [256, 256])
    if data.DATASET.startswith('Waymo'):
        # OpenPCDet's waymo_dataset.yaml: DISABLE_NLZ_FLAG_ON_POINTS: True (no-label-zone points are kept)
        assert data.DISABLE_NLZ_FLAG_ON_POINTS is True
    if data.DATASET == 'WaymoProcessedSweeps':
        assert data.LIDAR_ORIGINS == {name: list(xyz) for name, xyz in WAYMO_LIDAR_ORIGINS.items()}
        assert data.LIDAR_ORIGINS.TOP == list(WAYMO_TOP_LIDAR_ORIGIN)


def test_schema_knows_every_dataset_layout():
    assert set(DATASET_KEYS) == set(SOURCES)


def test_unknown_keys_are_named_with_close_matches(tmp_path):
    cfg = load('also_pretrain', tmp_path)
    cfg.DATA_CONFIG.VOXEL_SZE = [0.1, 0.1, 0.1]
    cfg.MODEL.DENSE_HEAD.latent_size = 64
    cfg.OPTIMISATION = cfg.pop('OPTIMIZATION')
    message = problems(cfg)
    assert 'unknown key DATA_CONFIG.VOXEL_SZE; did you mean VOXEL_SIZE?' in message
    assert 'unknown key MODEL.DENSE_HEAD.latent_size; did you mean LATENT_SIZE?' in message
    assert 'unknown key OPTIMISATION; did you mean OPTIMIZATION?' in message
    assert 'missing key OPTIMIZATION (a section' in message

    cfg = load('also_pretrain_waymo_tfrecord', tmp_path)
    cfg.DATA_CONFIG.SENSOR_ORIGIN = [0.0, 0.0, 2.0]  # tfrecords carry the extrinsic: the key would be ignored
    assert 'unknown key DATA_CONFIG.SENSOR_ORIGIN' in problems(cfg)
    cfg.DATA_CONFIG.DATASET = 'WaymoSweeps'
    assert problems(cfg).startswith("DATA_CONFIG.DATASET 'WaymoSweeps' is not a known dataset layout; did you mean "
                                    "WaymoTfrecordSweeps or WaymoProcessedSweeps")


def test_dense_head_class_agnostic_is_required(tmp_path):
    """OpenPCDet's Detector3DTemplate.build_dense_head reads DENSE_HEAD.CLASS_AGNOSTIC as an attribute: without it
    the model build fails there with an EasyDict AttributeError, so the check asks for it up front."""
    cfg = load('also_pretrain', tmp_path)
    cfg.MODEL.DENSE_HEAD.pop('CLASS_AGNOSTIC')
    assert problems(cfg) == 'bad config:\n  missing key MODEL.DENSE_HEAD.CLASS_AGNOSTIC (true or false)'


def test_wrong_types_and_missing_keys_are_all_listed(tmp_path):
    cfg = load('also_pretrain', tmp_path)
    data = cfg.DATA_CONFIG
    data.VOXEL_SIZE = [0.05, 0.05]
    data.AUGMENTATION.ENABLED = 'yes'
    data.QUERIES.NUM_QUERIES = 4096.5
    data.QUERIES.pop('BAND')
    data.VOXELIZATION.MAX_POINTS_PER_VOXEL = True
    cfg.OPTIMIZATION.LR = '1e-3'
    cfg.OPTIMIZATION.OPTIMIZER = 'adam_onecycle'
    lines = problems(cfg).splitlines()
    assert lines[0] == 'bad config:' and len(lines) == 8
    assert '  DATA_CONFIG.VOXEL_SIZE: expected a list of 3 numbers, got [0.05, 0.05] (list)' in lines
    assert "  DATA_CONFIG.AUGMENTATION.ENABLED: expected true or false, got 'yes' (str)" in lines
    assert '  DATA_CONFIG.QUERIES.NUM_QUERIES: expected an integer, got 4096.5 (float)' in lines
    assert '  missing key DATA_CONFIG.QUERIES.BAND (a number)' in lines
    assert '  DATA_CONFIG.VOXELIZATION.MAX_POINTS_PER_VOXEL: expected an integer, got True (bool)' in lines
    assert ("  OPTIMIZATION.LR: expected a number, got '1e-3' (str) (YAML reads a number like 1e-3 as a "
            "string: write 1.0e-3)") in lines
    assert "  OPTIMIZATION.OPTIMIZER: expected one of 'adamw', 'adam', 'sgd', got 'adam_onecycle' (str)" in lines

    cfg = load('also_pretrain_semantic_kitti', tmp_path)
    cfg.DATA_CONFIG.DATA_SPLIT.test = [8.0]
    assert ("DATA_CONFIG.DATA_SPLIT.test: expected one of 'all' or a list of items that are each a string or "
            "an integer, got [8.0] (list)") in problems(cfg)


def test_range_not_divisible_by_the_voxel_size(tmp_path):
    cfg = load('also_pretrain', tmp_path)
    cfg.DATA_CONFIG.VOXEL_SIZE = [0.07, 0.05, 0.1]
    assert 'DATA_CONFIG.POINT_CLOUD_RANGE [0.0, -40.0, -3.0, 70.4, 40.0, 1.0] is not a whole number of ' \
           'DATA_CONFIG.VOXEL_SIZE [0.07, 0.05, 0.1] cells' in problems(cfg)


def test_grids_the_stock_backbones_cannot_take(tmp_path):
    cfg = load('also_pretrain', tmp_path)
    cfg.DATA_CONFIG.POINT_CLOUD_RANGE = [0, -40, -3, 70.0, 40.4, 1]  # 1400 x 1608 x 40 cells
    message = problems(cfg)
    assert ('DATA_CONFIG.POINT_CLOUD_RANGE / DATA_CONFIG.VOXEL_SIZE give 1400 x cells: MODEL.BACKBONE_2D '
            'BaseBEVBackbone would concatenate maps of [175, 176] cells; use a multiple of 16 cells') in message
    assert 'give 1608 y cells' in message and 'z cells' not in message

    cfg.DATA_CONFIG.POINT_CLOUD_RANGE = [0, -40, -3, 70.4, 40, 2]  # 50 z cells: still 2 x 128 BEV features
    assert check_ok(cfg)
    cfg = load('also_pretrain_nuscenes', tmp_path)
    cfg.DATA_CONFIG.VOXEL_SIZE = [0.1, 0.1, 0.1]  # 80 z cells
    assert ('give 80 z cells: MODEL.BACKBONE_3D VoxelResBackBone8x leaves 4 x 128 = 512 BEV features, '
            'MODEL.MAP_TO_BEV HeightCompression has NUM_BEV_FEATURES 256') in problems(cfg)


def test_features_must_be_those_the_dataset_has(tmp_path):
    cfg = load('also_pretrain', tmp_path)
    encoding = cfg.DATA_CONFIG.POINT_FEATURE_ENCODING
    encoding.src_feature_list = encoding.used_feature_list = ['x', 'y', 'z', 'intensity', 'elongation']
    assert ("DATA_CONFIG.POINT_FEATURE_ENCODING.src_feature_list ['x', 'y', 'z', 'intensity', 'elongation']: "
            "KittiObjectSweeps sweeps have ['x', 'y', 'z', 'intensity'] (and a time lag timestamp/time, 0 for a "
            "single sweep), not ['elongation']") in problems(cfg)
    encoding.src_feature_list = encoding.used_feature_list = ['x', 'y', 'z', 'intensity', 'timestamp']
    assert check_ok(cfg)  # a time lag the sweeps lack is 0 (one sweep), as Waymo multi-frame configs expect

    cfg = load('also_pretrain', tmp_path)
    cfg.DATA_CONFIG.POINT_FEATURE_ENCODING.used_feature_list = ['x', 'y', 'intensity']
    assert 'used_feature_list' in problems(cfg) and 'must start with x, y, z' in problems(cfg)


def test_bad_values_and_missing_data_path(tmp_path):
    cfg = load('also_pretrain', tmp_path)
    cfg.DATA_CONFIG.MAX_BAD_FRACTION = 1.5
    assert 'DATA_CONFIG.MAX_BAD_FRACTION 1.5 must be in [0, 1)' in problems(cfg)

    cfg = load('also_pretrain', tmp_path / 'no' / 'such' / 'dir')
    assert f"DATA_CONFIG.DATA_PATH '{tmp_path / 'no' / 'such' / 'dir'}' does not exist" in problems(cfg)


def test_input_cap_follows_what_the_fine_tuned_detector_sees(tmp_path, synthetic_kitti):
    """OpenPCDet's Waymo, nuScenes, ONCE, Lyft and custom dataset configs subsample no points (only
    MAX_NUMBER_OF_VOXELS limits them), so those pretraining configs have no cap; KITTI keeps ALSO's 80,000.
    null and 0 mean no cap."""
    from also_pcdet.datasets import SweepDataset
    from conftest import tiny_cfg
    for name in STOCK:
        cap = load(name, tmp_path).DATA_CONFIG.QUERIES.MAX_INPUT_POINTS
        assert cap == (80000 if 'kitti' in name or name == 'also_pretrain' else None), name
    for name in ('once_sweeps', 'custom_sweeps', 'lyft_sweeps', 'nuscenes_sweeps', 'nuscenes_multisweep',
                 'waymo_common'):
        dataset = cfg_from_yaml_file(REPO / 'cfgs' / 'dataset_configs' / f'{name}.yaml')
        assert dataset.QUERIES.MAX_INPUT_POINTS is None, name
    counts = {}
    for cap in (None, 0, 5000):
        cfg = tiny_cfg(synthetic_kitti)
        cfg.DATA_CONFIG.QUERIES.MAX_INPUT_POINTS = cap
        check_config(cfg)
        counts[cap] = len(SweepDataset(cfg.DATA_CONFIG, training=False)[0]['points'])
    assert counts[None] == counts[0] > 5000 == counts[5000]
    cfg = load('also_pretrain', tmp_path)
    cfg.DATA_CONFIG.QUERIES.MAX_INPUT_POINTS = -1
    assert 'DATA_CONFIG.QUERIES.MAX_INPUT_POINTS -1 must be a positive cap, or null / 0 for no cap' in problems(cfg)
