"""An OpenPCDet detector config as the source of truth for what ALSO pretrains.

`derive_config(also_cfg, detector_cfg, source)` returns the ALSO config with the detector's backbone modules
(MODEL.VFE, BACKBONE_3D, MAP_TO_BEV, BACKBONE_2D), point-cloud range, voxelization and point features taken
unchanged, the raw-sweep layout of the detector's dataset, and ALSO's own queries, augmentation, head and
optimization. Heads, GT sampling and the rest of the detector config are ignored. The same derivation serves a
detector YAML (`derive_from_file`) and an entry of tests/facts/stock_backbones.json (`detector_cfg_from_facts`)."""
import copy
from pathlib import Path

from easydict import EasyDict

from .config import REPO_ROOT, ConfigError, load_yaml_with_bases
from .config_schema import DATASET_KEYS, MODULE_SECTIONS
from .datasets.sources import SOURCES

VOXEL_PROCESSORS = ('transform_points_to_voxels', 'transform_points_to_voxels_placeholder')
DATASET_CONFIGS = REPO_ROOT / 'cfgs' / 'dataset_configs'
# OpenPCDet DATA_CONFIG.DATASET -> the dataset config (cfgs/dataset_configs/) of its default raw-sweep layout
DEFAULT_LAYOUTS = {
    'KittiDataset': 'kitti_object_sweeps.yaml',
    'WaymoDataset': 'waymo_processed_sweeps.yaml',
    'NuScenesDataset': 'nuscenes_sweeps.yaml',
    'LyftDataset': 'lyft_sweeps.yaml',
    'CustomDataset': 'custom_sweeps.yaml',
    'ONCEDataset': 'once_sweeps.yaml',
}
# nuScenes detectors that merge past sweeps (DATA_CONFIG.MAX_SWEEPS > 1) get the same merge and time lag
MULTI_SWEEP_LAYOUTS = {'NuScenesDataset': 'nuscenes_multisweep.yaml'}
# Reader settings of OpenPCDet's dataset classes that change the points a detector sees, with OpenPCDet's
# default when the detector config has none: copied into the derived DATA_CONFIG.
READER_KEYS = {'WaymoDataset': (('DISABLE_NLZ_FLAG_ON_POINTS', False), ('POINTS_TANH_DIM', None))}
# ALSO's own and the multi-source ones, whatever the layout (but QUERIES.MAX_INPUT_POINTS: the layout's, what its
# detectors see)
ALSO_DATA_KEYS = ('QUERIES', 'AUGMENTATION', 'MAX_BAD_FRACTION', 'SOURCES', 'SWEEPS_PER_EPOCH', 'BEAM_DROP')
# Modules whose family ALSO cannot pretrain, and why (the generic checks in `unsupported_reason` cover the rest).
NOT_PRETRAINABLE = {
    'PointNet2MSG': 'is point-based (PointNet++ set abstraction on raw points): it has no voxel grid and no BEV '
                    "map for ALSO's occupancy head to decode from",
    'PointNet2Backbone': 'is point-based (PointNet++ on raw points): it has no voxel grid and no BEV map for '
                         "ALSO's occupancy head to decode from",
    'ImageVFE': 'is image-based: it lifts camera features into a frustum (CaDDN); ALSO pretrains from lidar sweeps '
                'only',
}


# 3-D backbones whose output is a sparse 2-D BEV tensor (`encoded_spconv_tensor`) the occupancy head decodes
# without a BACKBONE_2D (VoxelNeXt)
SPARSE_BEV_BACKBONES = ('VoxelResBackBone8xVoxelNeXt', 'VoxelResBackBone8xVoxelNeXt2D')


class DerivationError(ConfigError):
    """A detector config whose backbone ALSO cannot pretrain, or cannot read the data of."""


def tools_folder(path: Path):
    """OpenPCDet's tools/ folder for a config under it: the parent of the nearest `cfgs` folder above it."""
    return next((folder.parent for folder in Path(path).resolve().parents if folder.name == 'cfgs'), None)


def load_detector_cfg(path) -> EasyDict:
    """Read an OpenPCDet detector config from any working folder. OpenPCDet resolves `_BASE_CONFIG_: cfgs/...`
    from its tools/ folder (the parent of the `cfgs` folder holding the config); a few stock configs name
    their base relative to their own folder; the working directory comes last."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f'detector config not found: {path}')
    tools = tools_folder(path)
    roots = ([tools] if tools is not None else []) + [path.resolve().parent, Path.cwd()]
    return load_yaml_with_bases(path, roots=roots, repeated_keys='warn')


def voxel_settings(data_cfg, where: str) -> dict:
    """The detector's voxelization step of DATA_CONFIG.DATA_PROCESSOR (`VOXEL_SIZE`, ...), `{}` if none."""
    steps = [step for step in data_cfg.get('DATA_PROCESSOR') or [] if step.get('NAME') in VOXEL_PROCESSORS]
    if len(steps) > 1:
        raise DerivationError(f'{where}: DATA_CONFIG.DATA_PROCESSOR has {len(steps)} voxelization steps')
    return steps[0] if steps else {}


def unsupported_reason(model_cfg) -> str:
    """Why ALSO cannot pretrain this MODEL's backbone ('' when it can): ALSO decodes occupancy from the dense
    BEV map `spatial_features_2d` that VFE -> [BACKBONE_3D] -> [MAP_TO_BEV] -> BACKBONE_2D produce."""
    present = [section for section in MODULE_SECTIONS if model_cfg.get(section)]
    name = model_cfg.get('NAME', '?')
    if not present:
        return (f'{name} has no VFE, BACKBONE_3D, MAP_TO_BEV or BACKBONE_2D section (it refines the boxes of '
                f'another detector): there is no backbone to pretrain')
    for section in present:
        module = model_cfg[section]
        if module.NAME in NOT_PRETRAINABLE:
            return f'MODEL.{section} {module.NAME} {NOT_PRETRAINABLE[module.NAME]}'
        if module.get('USE_IMG'):
            return (f'MODEL.{section} {module.NAME} has USE_IMG: it needs camera images; ALSO pretrains from lidar '
                    f'sweeps only')
    if not model_cfg.get('VFE'):
        return f'{name} has no MODEL.VFE: its backbone does not work on a voxel grid ALSO can feed'
    if not model_cfg.get('BACKBONE_2D') and (model_cfg.get('BACKBONE_3D') or {}).get('NAME') not in SPARSE_BEV_BACKBONES:
        last = model_cfg[present[-1]].NAME
        return (f'{name} has no MODEL.BACKBONE_2D: MODEL.{present[-1]} {last} ends in a sparse or 3-D feature map, '
                f"not a BEV map ALSO's occupancy head decodes (spatial_features_2d, or VoxelNeXt's sparse 2-D "
                f"encoded_spconv_tensor)")
    return ''


def _layout_data_config(also_data, detector_data, where: str, provenance: list) -> EasyDict:
    """DATA_CONFIG whose layout reads the detector's dataset (OpenPCDet's DATASET name) as the detector sees it:
    the ALSO config's own when its layout does, else that layout's dataset config with ALSO's own keys kept.
    A nuScenes detector merging MAX_SWEEPS > 1 sweeps gets the multi-sweep layout with its MAX_SWEEPS (and
    OpenPCDet's info files for that many sweeps), so the time-lag weights are pretrained too."""
    dataset = detector_data.DATASET
    max_sweeps = int(detector_data.get('MAX_SWEEPS') or 1)
    multi_sweep = max_sweeps > 1 and dataset in MULTI_SWEEP_LAYOUTS
    current = SOURCES.get(also_data.get('DATASET'))
    if (current is not None and getattr(current, 'PCDET_DATASET', None) == dataset
            and ('MAX_SWEEPS' in also_data) == multi_sweep):
        data = copy.deepcopy(also_data)
        if multi_sweep:
            data.MAX_SWEEPS = max_sweeps
        return data
    layout = MULTI_SWEEP_LAYOUTS[dataset] if multi_sweep else DEFAULT_LAYOUTS.get(dataset)
    if layout is None or not (DATASET_CONFIGS / layout).is_file():
        known = sorted(name for name, file in DEFAULT_LAYOUTS.items() if (DATASET_CONFIGS / file).is_file())
        raise DerivationError(f'{where}: DATA_CONFIG.DATASET {dataset!r} has no raw-sweep layout in also-pcdet '
                              f'yet (layouts exist for {", ".join(known)})')
    data = load_yaml_with_bases(DATASET_CONFIGS / layout)
    input_cap = data.QUERIES.MAX_INPUT_POINTS  # what that dataset's detector sees, not the ALSO config's
    for key in ALSO_DATA_KEYS:
        if key in also_data:
            data[key] = copy.deepcopy(also_data[key])
    data.QUERIES.MAX_INPUT_POINTS = input_cap
    if multi_sweep:
        data.MAX_SWEEPS = max_sweeps
        data.DATA_SPLIT = EasyDict({mode: f'nuscenes_infos_{max_sweeps}sweeps_{split}.pkl'
                                    for mode, split in (('train', 'train'), ('test', 'val'))})
    keys = ['DATASET', 'DATA_PATH', 'DATA_SPLIT', 'SAMPLE_INTERVAL'] + list(DATASET_KEYS.get(data.DATASET, {}))
    provenance.append(f'DATA_CONFIG.{{{", ".join(k for k in dict.fromkeys(keys) if k in data)}}} <- '
                      f'cfgs/dataset_configs/{layout} (the {data.DATASET} layout reads {dataset} sweeps; '
                      f'point DATA_CONFIG.DATA_PATH at yours)')
    return data


def derive_config(also_cfg, detector_cfg, source: str, provenance: list = None) -> EasyDict:
    """The ALSO config `also_cfg` with the backbone and geometry of `detector_cfg` (named `source` in messages
    and in `provenance`, a list that gets one line per derived part)."""
    provenance = [] if provenance is None else provenance
    model, data = detector_cfg.get('MODEL') or {}, detector_cfg.get('DATA_CONFIG') or {}
    reason = unsupported_reason(model)
    if reason:
        raise DerivationError(f'{source}: cannot pretrain this backbone with ALSO: {reason}')
    for key in ('DATASET', 'POINT_CLOUD_RANGE', 'POINT_FEATURE_ENCODING'):
        if key not in data:
            raise DerivationError(f'{source}: DATA_CONFIG.{key} is missing')
    voxels = voxel_settings(data, source)
    if 'VOXEL_SIZE' not in voxels:
        raise DerivationError(f'{source}: DATA_CONFIG.DATA_PROCESSOR has no transform_points_to_voxels step with '
                              f'a VOXEL_SIZE')

    cfg = copy.deepcopy(also_cfg)
    cfg.DATA_CONFIG = _layout_data_config(also_cfg.DATA_CONFIG, data, source, provenance)
    cfg.DATA_CONFIG.POINT_CLOUD_RANGE = list(data.POINT_CLOUD_RANGE)
    cfg.DATA_CONFIG.VOXEL_SIZE = list(voxels.VOXEL_SIZE)
    encoding = data.POINT_FEATURE_ENCODING
    cfg.DATA_CONFIG.POINT_FEATURE_ENCODING = EasyDict(
        encoding_type=encoding.get('encoding_type', 'absolute_coordinates_encoding'),
        used_feature_list=list(encoding.used_feature_list), src_feature_list=list(encoding.src_feature_list))
    derived = ['DATA_CONFIG.POINT_CLOUD_RANGE', 'DATA_CONFIG.VOXEL_SIZE', 'DATA_CONFIG.POINT_FEATURE_ENCODING']
    for key, default in READER_KEYS.get(data.DATASET, ()):
        cfg.DATA_CONFIG[key] = copy.deepcopy(data.get(key, default))
        derived.append(f'DATA_CONFIG.{key}')
    if 'MAX_POINTS_PER_VOXEL' in voxels:
        cfg.DATA_CONFIG.VOXELIZATION = EasyDict(
            MAX_POINTS_PER_VOXEL=int(voxels.MAX_POINTS_PER_VOXEL),
            MAX_NUMBER_OF_VOXELS={mode: int(voxels.MAX_NUMBER_OF_VOXELS[mode]) for mode in ('train', 'test')})
        derived.append('DATA_CONFIG.VOXELIZATION')
    else:
        provenance.append(f'DATA_CONFIG.VOXELIZATION <- the ALSO config ({source} voxelizes inside its '
                          f'{model.VFE.NAME}, {voxels.NAME})')
    cfg.MODEL = EasyDict({key: value for key, value in cfg.MODEL.items() if key not in MODULE_SECTIONS})
    for section in MODULE_SECTIONS:
        if model.get(section):
            cfg.MODEL[section] = copy.deepcopy(model[section])
            derived.append(f'MODEL.{section} ({model[section].NAME})')
    head_input = (model.get('DENSE_HEAD') or {}).get('INPUT_FEATURES')
    if not model.get('MAP_TO_BEV') and not model.get('BACKBONE_2D') and head_input is not None:
        cfg.MODEL.DENSE_HEAD.INPUT_FEATURES = int(head_input)  # the template's head input without a BEV module
        derived.append('MODEL.DENSE_HEAD.INPUT_FEATURES')
    cfg.pop('DETECTOR_CFG', None)  # done: the result records where it came from, and re-loads as it is
    cfg.DERIVED_FROM = str(source)
    provenance.insert(0, f'{", ".join(derived)} <- {source} ({model.get("NAME", "?")} on {data.DATASET})')
    provenance.append(f'ignored from {source}: its heads, GT sampling, augmentation and the rest of its DATA_CONFIG '
                      f'and OPTIMIZATION; the queries, occupancy head and optimization are the ALSO config\'s')
    return cfg


def derive_from_file(also_cfg, path, provenance: list = None) -> EasyDict:
    """`derive_config` from a detector YAML (OpenPCDet's `_BASE_CONFIG_` resolution, any working folder)."""
    path = Path(path).resolve()
    return derive_config(also_cfg, load_detector_cfg(path), str(path), provenance)


def detector_cfg_from_facts(entry: dict) -> EasyDict:
    """The parts of an OpenPCDet detector config that the derivation reads, from one entry of
    STOCK_BACKBONES.json (`tests/facts/stock_backbones.json`)."""
    processor = []
    if entry.get('voxel_processor'):
        step = {'NAME': entry['voxel_processor'], 'VOXEL_SIZE': entry['voxel_size']}
        if entry.get('max_points_per_voxel') is not None:
            step.update(MAX_POINTS_PER_VOXEL=entry['max_points_per_voxel'],
                        MAX_NUMBER_OF_VOXELS=entry['max_number_of_voxels'])
        processor.append(step)
    model = {'NAME': entry['detector']}
    model.update({section: entry[section] for section in MODULE_SECTIONS if entry.get(section)})
    if entry.get('dense_head'):
        model['DENSE_HEAD'] = {'NAME': entry['dense_head'], 'INPUT_FEATURES': entry.get('dense_head_input_channels')}
    return EasyDict({
        'CLASS_NAMES': entry.get('class_names') or [],
        'DATA_CONFIG': {
            'DATASET': entry['dataset'], 'POINT_CLOUD_RANGE': entry['point_cloud_range'],
            'POINT_FEATURE_ENCODING': {'encoding_type': 'absolute_coordinates_encoding',
                                       'used_feature_list': entry['used_feature_list'],
                                       'src_feature_list': entry['src_feature_list']},
            'DATA_PROCESSOR': processor,
        },
        'MODEL': model,
    })
