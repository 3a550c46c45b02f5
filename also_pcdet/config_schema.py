"""Every config key this project reads, with its type; `config_checks.check_config` rejects any other key.

A schema is a dict {KEY: spec}. A spec is `int`, `float` (an int is accepted), `bool`, `str`, `None` (null),
`ListOf(spec, length)`, `OneOf(spec, ...)`, `Choice(value, ...)`, `Required(spec)` (the key must be present)
or a dict (a section whose keys must all be known). A key added to the code must be added here."""


class ListOf:
    def __init__(self, item, length=None):
        self.item, self.length = item, length


class OneOf:
    def __init__(self, *specs):
        self.specs = specs


class Choice:
    def __init__(self, *values):
        self.values = values


class Required:
    def __init__(self, spec):
        self.spec = spec


class Module:
    """A module section (MODEL.VFE, ...): a mapping with a NAME. `keys[NAME]`, when there is one, is the strict
    schema of the other keys of that module; any other module's keys are its own, checked by building it."""

    def __init__(self, keys=None):
        self.keys = keys or {}


XYZ = ListOf(float, 3)
WAYMO_LIDAR_NAMES = ('TOP', 'FRONT', 'SIDE_LEFT', 'SIDE_RIGHT', 'REAR')  # Waymo's LaserName 1..5
TRAIN_TEST_INT = {'train': Required(int), 'test': Required(int)}


def _split(spec):
    """DATA_SPLIT: what each of `train` and `test` names depends on the dataset layout."""
    return Required({'train': Required(spec), 'test': Required(spec)})


# DATA_CONFIG keys of one layout (`DATASET`), on top of DATA_CONFIG; see datasets/sources.py.
DATASET_KEYS = {
    'KittiObjectSweeps': {'DATA_SPLIT': _split(str), 'SENSOR_ORIGIN': XYZ},
    'KittiRawSweeps': {'DATA_SPLIT': _split(str), 'SENSOR_ORIGIN': XYZ, 'OBJECT_DEVKIT_MAPPING': OneOf(None, str),
                       'OBJECT_VAL_SPLIT': OneOf(None, str), 'ALLOW_OBJECT_VAL_OVERLAP': bool},
    'Kitti360Sweeps': {'DATA_SPLIT': _split(str), 'SENSOR_ORIGIN': XYZ},
    'NuScenesMultiSweeps': {'DATA_SPLIT': _split(str), 'SENSOR_ORIGIN': XYZ, 'MAX_SWEEPS': int},
    'OnceSweeps': {'DATA_SPLIT': _split(str), 'SENSOR_ORIGIN': XYZ},
    'SequenceSweeps': {'DATA_SPLIT': _split(OneOf(Choice('all'), ListOf(OneOf(str, int)))), 'SENSOR_ORIGIN': XYZ},
    'NuScenesSweeps': {'DATA_SPLIT': _split(str), 'SENSOR_ORIGIN': XYZ, 'INCLUDE_SWEEPS': bool, 'VERSION': str},
    'WaymoProcessedSweeps': {'DATA_SPLIT': _split(str), 'PROCESSED_DATA_TAG': str, 'DISABLE_NLZ_FLAG_ON_POINTS': bool,
                             'POINTS_TANH_DIM': OneOf(None, ListOf(int)),
                             'LIDAR_ORIGINS': {name: Required(XYZ) for name in WAYMO_LIDAR_NAMES}},
    'WaymoTfrecordSweeps': {'DATA_SPLIT': _split(str), 'RAW_DATA_TAG': str, 'INDEX_CACHE': OneOf(None, str),
                            'DISABLE_NLZ_FLAG_ON_POINTS': bool, 'POINTS_TANH_DIM': OneOf(None, ListOf(int))},
    'LyftSweeps': {'DATA_SPLIT': _split(str), 'SENSOR_ORIGIN': XYZ, 'VERSION': str},
    'CustomSweeps': {'DATA_SPLIT': _split(str), 'SENSOR_ORIGIN': XYZ},
}

# DATA_CONFIG keys of every dataset layout.
DATA_CONFIG = {
    'DATASET': Required(Choice(*DATASET_KEYS)),
    'DATA_PATH': Required(str),
    'CLASS_NAMES': ListOf(str),
    'POINT_CLOUD_RANGE': Required(ListOf(float, 6)),
    'VOXEL_SIZE': Required(XYZ),
    'SAMPLE_INTERVAL': TRAIN_TEST_INT,
    'POINT_FEATURE_ENCODING': Required({
        'encoding_type': Choice('absolute_coordinates_encoding'),
        'used_feature_list': Required(ListOf(str)),
        'src_feature_list': Required(ListOf(str)),
    }),
    'QUERIES': Required({
        'DECIMATION_CELL': Required(float),
        'NUM_QUERIES': Required(int),
        'BAND': Required(float),
        'MAX_INPUT_POINTS': Required(OneOf(None, int)),  # null or 0: no cap
    }),
    'AUGMENTATION': Required({
        'ENABLED': Required(bool),
        'ROT_RANGE': Required(ListOf(float, 2)),
        'FLIP_X_PROB': Required(float),
    }),
    'VOXELIZATION': Required({
        'MAX_POINTS_PER_VOXEL': Required(int),
        'MAX_NUMBER_OF_VOXELS': Required(TRAIN_TEST_INT),
    }),
    'MAX_BAD_FRACTION': float,
    # several datasets pretraining this (target) config's detector: each entry is checked by
    # datasets/multi_source.py `source_errors`
    'SOURCES': ListOf(dict),
    'SWEEPS_PER_EPOCH': OneOf(None, int),  # multi-source epochs: null = all the sources' sweeps
    # sensor gap: drop whole rings (datasets/beam_drop.py); absent or empty: off
    'BEAM_DROP': {'KEEP_EVERY': int, 'BEAMS': int, 'RING_GAP_DEG': float},
}

SPARSE_3D_KEYS = {'USE_BIAS': OneOf(None, bool), 'last_pad': int}
# Strict key schemas of the modules a hand-written section may name; a section derived from a detector config
# (DERIVED_FROM) is taken as the detector has it.
MODULE_KEYS = {
    'MeanVFE': {},
    'VoxelBackBone8x': SPARSE_3D_KEYS,
    'VoxelResBackBone8x': SPARSE_3D_KEYS,
    'HeightCompression': {'NUM_BEV_FEATURES': Required(int)},
    'BaseBEVBackbone': {
        'LAYER_NUMS': ListOf(int),
        'LAYER_STRIDES': ListOf(int),
        'NUM_FILTERS': ListOf(int),
        'UPSAMPLE_STRIDES': ListOf(float),
        'NUM_UPSAMPLE_FILTERS': ListOf(int),
        'USE_CONV_FOR_NO_STRIDE': bool,
    },
}
MODULE_SECTIONS = ('VFE', 'BACKBONE_3D', 'MAP_TO_BEV', 'BACKBONE_2D')

MODEL = {
    'NAME': Required(str),
    'VFE': Required(Module(MODULE_KEYS)),
    'BACKBONE_3D': Module(MODULE_KEYS),
    'MAP_TO_BEV': Module(MODULE_KEYS),
    'BACKBONE_2D': Module(MODULE_KEYS),  # absent: VoxelNeXt (see detector_config.unsupported_reason)
    'DENSE_HEAD': Required({
        'NAME': Required(str),
        'CLASS_AGNOSTIC': Required(bool),  # OpenPCDet's Detector3DTemplate reads it unconditionally
        'INPUT_FEATURES': int,
        'LATENT_SIZE': Required(int),
        'RADIUS': Required(float),
        'MAX_NEIGHBOURS': Required(int),
        'DECODER_HIDDEN': Required(int),
        'DECODER_LAYERS': Required(int),
        'LOSS_WEIGHTS': Required({'OCCUPANCY': Required(float), 'INTENSITY': Required(float)}),
    }),
}

OPTIMIZATION = {
    'BATCH_SIZE_PER_GPU': Required(int),
    'NUM_EPOCHS': Required(int),
    'OPTIMIZER': Required(Choice('adamw', 'adam', 'sgd')),
    'LR': Required(float),
    'WEIGHT_DECAY': Required(float),
    'MOMENTUM': float,
    'LR_SCHEDULE': Choice('constant', 'cosine'),
    'GRAD_NORM_CLIP': float,
    'MAX_NONFINITE_STEPS': int,
    'CKPT_SAVE_ITERS': int,
    'LOG_INTERVAL': int,
    'USE_AMP': bool,  # OpenPCDet's name; --use_amp turns it on too
}


def config_schema(dataset: str, derived: bool = False) -> dict:
    """The schema of a whole config whose DATA_CONFIG.DATASET is `dataset`; `derived`: its module sections come
    from a detector config (DERIVED_FROM) and are accepted as they are."""
    model = dict(MODEL)
    if derived:
        model.update({section: Module() for section in MODULE_SECTIONS})
        model['VFE'] = Required(Module())
    return {
        'CLASS_NAMES': ListOf(str),
        'DETECTOR_CFG': OneOf(None, str),  # derive from this detector config (detector_config.py)
        'DERIVED_FROM': OneOf(None, str),  # the detector config this one was derived from
        'DATA_CONFIG': Required(dict(DATA_CONFIG, **DATASET_KEYS.get(dataset, {}))),
        'MODEL': Required(model),
        'OPTIMIZATION': Required(OPTIMIZATION),
    }
