"""Checks that fail a bad config before training starts, naming the key or path."""
import difflib
import math
from pathlib import Path

import numpy as np

from .config import ConfigError
from .config_schema import DATASET_KEYS, Choice, ListOf, Module, OneOf, Required, config_schema
from .datasets.beam_drop import beam_drop_errors
from .datasets.sources import SOURCES, TIME_FEATURES
from .detector_config import unsupported_reason

STOCK_BACKBONES_3D = ('VoxelBackBone8x', 'VoxelResBackBone8x')  # 8x in x and y; 128 output channels
SPARSE_3D_CHANNELS = 128
PILLAR_SCATTERS = ('PointPillarScatter',)  # one z cell per pillar
NAMES = {float: 'a number', int: 'an integer', bool: 'true or false', str: 'a string', None: 'null'}
PLURALS = {float: 'numbers', int: 'integers', bool: 'true/false values', str: 'strings'}


def check_config(cfg):
    """Raise ConfigError for unknown keys (with close matches), wrong types, missing keys, a range the voxel
    size does not divide, a grid the stock OpenPCDet backbones cannot take, features the dataset does not
    provide, or a DATA_PATH that does not exist. Every problem of a stage is listed at once."""
    data = cfg.get('DATA_CONFIG')
    dataset = data.get('DATASET') if isinstance(data, dict) else None
    if dataset not in DATASET_KEYS:  # its keys depend on it: check it first
        raise ConfigError(f'DATA_CONFIG.DATASET {dataset!r} is not a known dataset layout'
                          f'{_suggest(str(dataset), DATASET_KEYS)}')
    errors = schema_errors(cfg, config_schema(dataset, derived=bool(cfg.get('DERIVED_FROM')))) or value_errors(cfg)
    if errors:
        raise ConfigError('bad config:\n  ' + '\n  '.join(errors))
    reason = unsupported_reason(cfg.MODEL)
    if reason:
        raise ConfigError(f'cannot pretrain this backbone with ALSO: {reason}')
    _check_modules_build(cfg)
    if data.get('SOURCES'):  # the sources' DATA_PATHs are read, not the target's
        from .datasets.multi_source import source_errors
        errors = source_errors(data, cfg.get('DERIVED_FROM'))
        if errors:
            raise ConfigError('bad DATA_CONFIG.SOURCES:\n  ' + '\n  '.join(errors))
    elif not Path(data.DATA_PATH).exists():
        raise ConfigError(f'DATA_CONFIG.DATA_PATH {data.DATA_PATH!r} does not exist '
                          f'(generate synthetic sweeps with tools/make_synthetic.py, or point it at your data)')


def schema_errors(node: dict, schema: dict, prefix: str = '') -> list:
    """Messages for the keys of `node` that `schema` does not know or whose values do not match."""
    errors = []
    for key, value in node.items():
        dotted = f'{prefix}{key}'
        if key not in schema:
            errors.append(f'unknown key {dotted}{_suggest(str(key), schema)}')
            continue
        spec = _unwrap(schema[key])
        if isinstance(spec, Module) and isinstance(value, dict):
            errors += _module_errors(value, spec, dotted)
        elif isinstance(spec, dict) and isinstance(value, dict):
            errors += schema_errors(value, spec, f'{dotted}.')
        elif isinstance(spec, dict) or not matches(value, spec):
            errors.append(f'{dotted}: expected {describe(spec)}, got {value!r} ({type(value).__name__})'
                          f'{_hint(value, spec)}')
    errors += [f'missing key {prefix}{key} ({describe(spec)})' for key, spec in schema.items()
               if isinstance(spec, Required) and key not in node]
    return errors


def _module_errors(section: dict, spec, dotted: str) -> list:
    if not isinstance(section.get('NAME'), str):
        return [f'{dotted}.NAME: expected a string (the module name), got {section.get("NAME")!r}']
    if section['NAME'] not in spec.keys:
        return []
    return schema_errors(section, dict(spec.keys[section['NAME']], NAME=str), f'{dotted}.')


def _check_modules_build(cfg):
    """Build the backbone modules (as the detector template does) so that a section they cannot take fails
    here, before any data is read."""
    from .engine.pretrained_check import BackboneParts
    try:
        BackboneParts(cfg)
    except Exception as err:  # any constructor error of any registered module: report it with the sections
        names = ', '.join(f'{s} {cfg.MODEL[s].NAME}' for s in ('VFE', 'BACKBONE_3D', 'MAP_TO_BEV', 'BACKBONE_2D')
                          if cfg.MODEL.get(s))
        raise ConfigError(f'the MODEL backbone ({names}) cannot be built: {type(err).__name__}: {err}') from err


def matches(value, spec) -> bool:
    if isinstance(spec, Module):
        return isinstance(value, dict)
    if spec is None:
        return value is None
    if spec in (int, float):
        return isinstance(value, (int, float) if spec is float else int) and not isinstance(value, bool)
    if isinstance(spec, type):
        return isinstance(value, spec)
    if isinstance(spec, ListOf):
        return (isinstance(value, (list, tuple)) and spec.length in (None, len(value))
                and all(matches(item, spec.item) for item in value))
    if isinstance(spec, OneOf):
        return any(matches(value, option) for option in spec.specs)
    return any(type(value) is type(choice) and value == choice for choice in spec.values)


def describe(spec) -> str:
    spec = _unwrap(spec)
    if isinstance(spec, Module):
        return 'a module section (a mapping with a NAME)'
    if isinstance(spec, dict):
        return 'a section (a mapping of keys)'
    if isinstance(spec, ListOf):
        items = PLURALS.get(spec.item) or f'items that are each {describe(spec.item)}'
        return f'a list of {spec.length} {items}' if spec.length else f'a list of {items}'
    if isinstance(spec, OneOf):
        return ' or '.join(describe(option) for option in spec.specs)
    if isinstance(spec, Choice):
        return 'one of ' + ', '.join(repr(choice) for choice in spec.values)
    return NAMES[spec]


def _unwrap(spec):
    return spec.spec if isinstance(spec, Required) else spec


def _suggest(key: str, schema: dict) -> str:
    known = {str(k).upper(): str(k) for k in schema}
    close = difflib.get_close_matches(key.upper(), list(known), n=3, cutoff=0.6)
    if close:
        return '; did you mean ' + ' or '.join(known[c] for c in close) + '?'
    return '; known: ' + ', '.join(sorted(known.values()))


def _hint(value, spec) -> str:
    """PyYAML reads `1e-3` (no dot) as a string: say so when the text is a number that would fit."""
    try:
        fits = isinstance(value, str) and matches(float(value), spec)
    except ValueError:
        fits = False
    return ' (YAML reads a number like 1e-3 as a string: write 1.0e-3)' if fits else ''


def value_errors(cfg) -> list:
    """Grid and feature problems of a config that passed the schema."""
    data = cfg.DATA_CONFIG
    pc_range = np.asarray(data.POINT_CLOUD_RANGE, dtype=np.float64)
    voxel = np.asarray(data.VOXEL_SIZE, dtype=np.float64)
    errors = []
    cells = (pc_range[3:] - pc_range[:3]) / np.where(voxel > 0, voxel, np.nan)
    if not np.all(np.abs(cells - np.round(cells)) <= 1e-4) or np.any(cells < 1):
        errors.append(f'DATA_CONFIG.POINT_CLOUD_RANGE {pc_range.tolist()} is not a whole number of '
                      f'DATA_CONFIG.VOXEL_SIZE {voxel.tolist()} cells: {cells.tolist()}')
    else:
        errors += _grid_errors(np.round(cells).astype(int), cfg.MODEL)
    errors += _feature_errors(data)
    if (data.QUERIES.MAX_INPUT_POINTS or 0) < 0:
        errors.append(f'DATA_CONFIG.QUERIES.MAX_INPUT_POINTS {data.QUERIES.MAX_INPUT_POINTS} must be a positive '
                      f'cap, or null / 0 for no cap')
    if not 0 <= data.get('MAX_BAD_FRACTION', 0.0) < 1:
        errors.append(f'DATA_CONFIG.MAX_BAD_FRACTION {data.MAX_BAD_FRACTION} must be in [0, 1)')
    errors += beam_drop_errors(data.get('BEAM_DROP'))
    return errors + _number_errors(cfg)


# Numeric settings and the values they take: (lowest, highest, whether the lowest itself is allowed).
AT_LEAST_1, POSITIVE, NOT_NEGATIVE = (1, None, True), (0, None, False), (0, None, True)
NUMBER_RANGES = {
    'OPTIMIZATION.BATCH_SIZE_PER_GPU': AT_LEAST_1, 'OPTIMIZATION.NUM_EPOCHS': AT_LEAST_1,
    'OPTIMIZATION.LR': POSITIVE, 'OPTIMIZATION.WEIGHT_DECAY': NOT_NEGATIVE, 'OPTIMIZATION.MOMENTUM': (0, 1, True),
    'OPTIMIZATION.GRAD_NORM_CLIP': NOT_NEGATIVE, 'OPTIMIZATION.MAX_NONFINITE_STEPS': AT_LEAST_1,
    'OPTIMIZATION.CKPT_SAVE_ITERS': NOT_NEGATIVE, 'OPTIMIZATION.LOG_INTERVAL': AT_LEAST_1,
    'DATA_CONFIG.QUERIES.NUM_QUERIES': AT_LEAST_1, 'DATA_CONFIG.QUERIES.DECIMATION_CELL': POSITIVE,
    'DATA_CONFIG.QUERIES.BAND': POSITIVE, 'DATA_CONFIG.AUGMENTATION.FLIP_X_PROB': (0, 1, True),
    'DATA_CONFIG.VOXELIZATION.MAX_POINTS_PER_VOXEL': AT_LEAST_1,
    'DATA_CONFIG.VOXELIZATION.MAX_NUMBER_OF_VOXELS.train': AT_LEAST_1,
    'DATA_CONFIG.VOXELIZATION.MAX_NUMBER_OF_VOXELS.test': AT_LEAST_1,
    'DATA_CONFIG.SAMPLE_INTERVAL.train': AT_LEAST_1, 'DATA_CONFIG.SAMPLE_INTERVAL.test': AT_LEAST_1,
    'MODEL.DENSE_HEAD.LATENT_SIZE': AT_LEAST_1, 'MODEL.DENSE_HEAD.RADIUS': POSITIVE,
    'MODEL.DENSE_HEAD.MAX_NEIGHBOURS': AT_LEAST_1, 'MODEL.DENSE_HEAD.DECODER_HIDDEN': AT_LEAST_1,
    'MODEL.DENSE_HEAD.DECODER_LAYERS': AT_LEAST_1, 'MODEL.DENSE_HEAD.LOSS_WEIGHTS.OCCUPANCY': NOT_NEGATIVE,
    'MODEL.DENSE_HEAD.LOSS_WEIGHTS.INTENSITY': NOT_NEGATIVE,
}


def _number_errors(cfg) -> list:
    """Every number of the config must be finite (no .nan / .inf), and those in NUMBER_RANGES in range."""
    errors = [f'{key} is {value}: every number must be finite' for key, value in _numbers(cfg)
              if not math.isfinite(value)]
    for key, (low, high, low_ok) in NUMBER_RANGES.items():
        value = _lookup(cfg, key)
        if isinstance(value, (int, float)) and math.isfinite(value) and (
                value < low or (value == low and not low_ok) or (high is not None and value > high)):
            bound = f'{"at least" if low_ok else "above"} {low}' + (f' and at most {high}' if high is not None else '')
            errors.append(f'{key} must be {bound}, got {value!r}')
    return errors


def _numbers(node, prefix=''):
    """(dotted key, value) of every number in a config section, inside lists too."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        dotted = f'{prefix}.{key}' if prefix and isinstance(node, dict) else f'{prefix}[{key}]' if prefix else str(key)
        if isinstance(value, (dict, list, tuple)):
            yield from _numbers(value, dotted)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield dotted, value


def _lookup(cfg, dotted: str):
    node = cfg
    for key in dotted.split('.'):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def sparse_z_cells(z_cells: int, last_pad: int = 0) -> int:
    """z cells left by VoxelBackBone8x / VoxelResBackBone8x from `z_cells` voxels (41 sparse cells for 40)."""
    z = z_cells + 1
    for pad in (1, 1, 0, last_pad):  # conv2, conv3, conv4 (no z padding), conv_out: kernel 3, stride 2
        z = (z + 2 * pad - 3) // 2 + 1
    return z


def bev_sizes(cells: int, backbone_2d) -> list:
    """Sizes along one axis of BaseBEVBackbone's upsampled outputs for an input map of `cells` cells."""
    sizes = []
    for stride, up in zip(backbone_2d.get('LAYER_STRIDES') or [], backbone_2d.get('UPSAMPLE_STRIDES') or []):
        cells = (cells - 1) // stride + 1  # 3x3 conv, padding 1
        sizes.append(cells * int(up) if up >= 1 else cells // int(round(1 / up)))
    return sizes


def _grid_errors(cells, model) -> list:
    """Grid sizes the configured modules cannot take (known modules only; others are checked by training)."""
    keys = 'DATA_CONFIG.POINT_CLOUD_RANGE / DATA_CONFIG.VOXEL_SIZE'
    b3d, to_bev, b2d = (model.get(s) or {} for s in ('BACKBONE_3D', 'MAP_TO_BEV', 'BACKBONE_2D'))
    errors, bev_in, stride = [], None, 1
    if b3d.get('NAME') in STOCK_BACKBONES_3D:
        bev_in, stride = [-(-int(n) // 8) for n in cells[:2]], 8
        if to_bev.get('NAME') == 'HeightCompression':
            z = sparse_z_cells(int(cells[2]), b3d.get('last_pad', 0))
            if z * SPARSE_3D_CHANNELS != to_bev.NUM_BEV_FEATURES:
                errors.append(f'{keys} give {cells[2]} z cells: MODEL.BACKBONE_3D {b3d.NAME} leaves {z} x '
                              f'{SPARSE_3D_CHANNELS} = {z * SPARSE_3D_CHANNELS} BEV features, MODEL.MAP_TO_BEV '
                              f'HeightCompression has NUM_BEV_FEATURES {to_bev.NUM_BEV_FEATURES} (40 z cells give '
                              f'256, as in every stock OpenPCDet config)')
    elif to_bev.get('NAME') in PILLAR_SCATTERS:
        bev_in = [int(n) for n in cells[:2]]
        if cells[2] != 1:
            errors.append(f'{keys} give {cells[2]} z cells; MODEL.MAP_TO_BEV {to_bev.NAME} needs 1 (a pillar '
                          f'spans the whole z range)')
    if bev_in is None or b2d.get('NAME') != 'BaseBEVBackbone':
        return errors
    multiple = stride * int(np.prod(b2d.get('LAYER_STRIDES') or [1]))
    for axis, count, size in zip('xy', cells[:2], bev_in):
        sizes = bev_sizes(size, b2d)
        if len(set(sizes)) > 1:
            errors.append(f'{keys} give {count} {axis} cells: MODEL.BACKBONE_2D BaseBEVBackbone would concatenate '
                          f'maps of {sizes} cells; use a multiple of {multiple} cells')
    out = [bev_sizes(size, b2d)[-1] if b2d.get('LAYER_STRIDES') else size for size in bev_in]
    ratios = {int(count) / max(size, 1) for count, size in zip(cells[:2], out)}
    if not errors and (len(ratios) > 1 or any(r != int(r) for r in ratios)):
        errors.append(f'{keys} give {cells[0]} x {cells[1]} cells but a BEV map of {out[0]} x {out[1]}: the '
                      f'occupancy head needs the same whole stride in x and y; use a multiple of {multiple} cells')
    return errors


def _feature_errors(data) -> list:
    encoding = data.POINT_FEATURE_ENCODING
    provided = list(SOURCES[data.DATASET].FEATURES)
    errors = []
    missing = [f for f in encoding.src_feature_list if f not in provided and f not in TIME_FEATURES]
    if missing:
        errors.append(f'DATA_CONFIG.POINT_FEATURE_ENCODING.src_feature_list {list(encoding.src_feature_list)}: '
                      f'{data.DATASET} sweeps have {provided} (and a time lag {"/".join(TIME_FEATURES)}, 0 for a '
                      f'single sweep), not {missing}')
    used = list(encoding.used_feature_list)
    if used[:3] != ['x', 'y', 'z'] or not set(used) <= set(encoding.src_feature_list):
        errors.append(f'DATA_CONFIG.POINT_FEATURE_ENCODING.used_feature_list {used} must start with x, y, z '
                      f'and be taken from src_feature_list')
    return errors
