"""YAML configs in OpenPCDet's style: EasyDict, `_BASE_CONFIG_` inheritance, `--set` overrides."""
import argparse
import ast
import warnings
from pathlib import Path

import yaml
from easydict import EasyDict

from .engine.cli import add_debug_flag
from .errors import UserError, special_file

REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(UserError, ValueError):
    """A config file or override that cannot be used; the message names the key or file."""


class RepeatedKey(yaml.YAMLError):
    """A mapping that names a key twice: PyYAML would keep the last silently, dropping the first section."""

    def __init__(self, key, first_line: int, second_line: int):
        super().__init__(f'key {key!r} appears twice in one mapping (lines {first_line} and {second_line}): YAML '
                         f'keeps only the second, so the first is lost; merge them')


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader refusing a mapping that repeats a key (RepeatedKey)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: SafeLoader reports it itself
                continue
            if first != key_node.start_mark.line + 1:
                raise RepeatedKey(key, first, key_node.start_mark.line + 1)
        return super().construct_mapping(node, deep)


def resolve_config_path(name, including_file: Path, key: str = '_BASE_CONFIG_', roots=None) -> Path:
    """Find a path named inside a config file: absolute, or relative to the first of `roots` that holds it
    (default: the working directory, as OpenPCDet resolves it; beside the including file; the repository)."""
    roots = [Path.cwd(), including_file.parent, REPO_ROOT] if roots is None else roots
    for candidate in [Path(name)] if Path(name).is_absolute() else [Path(root) / name for root in roots]:
        if candidate.is_file():
            return candidate
    raise ConfigError(f'{including_file}: {key} {name!r} not found (looked in {", ".join(map(str, roots))})')


def _merge(into: EasyDict, new: dict, source: Path, chain: tuple, roots, repeated_keys: str = 'refuse') -> EasyDict:
    if '_BASE_CONFIG_' in new:
        base_path = resolve_config_path(new['_BASE_CONFIG_'], source, roots=roots)
        into.update(load_yaml_with_bases(base_path, chain, roots, repeated_keys))
    for key, val in new.items():
        if key == '_BASE_CONFIG_':
            continue
        if isinstance(val, dict):
            into.setdefault(key, EasyDict())
            if not isinstance(into[key], dict):
                into[key] = EasyDict()
            _merge(into[key], val, source, chain, roots, repeated_keys)
        else:
            into[key] = val
    return into


def load_yaml_with_bases(path, chain: tuple = (), roots=None, repeated_keys: str = 'refuse') -> EasyDict:
    """Read one YAML file, filling every section that names `_BASE_CONFIG_` from that file first. `chain`:
    the files whose `_BASE_CONFIG_` led here; a file that comes back is a ConfigError naming the cycle.
    `roots`: the folders a relative base path is looked up in (see `resolve_config_path`). A key repeated in
    one mapping is a ConfigError, or with `repeated_keys='warn'` (an OpenPCDet detector config, which
    OpenPCDet reads keeping the last value) a warning naming the file and key."""
    path = Path(path)
    if special_file(path):
        raise ConfigError(f'{path}: the config is {special_file(path)}')
    if not path.is_file():
        raise ConfigError(f'config file not found: {path}')
    resolved = path.resolve()
    if resolved in chain:
        cycle = [str(p) for p in chain[chain.index(resolved):]] + [str(resolved)]
        raise ConfigError('_BASE_CONFIG_ cycle: ' + ' -> '.join(cycle))
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader) or {}
    except RepeatedKey as err:
        if repeated_keys != 'warn':
            raise ConfigError(f'{path}: {err}') from err
        warnings.warn(f'{path}: {err}; reading it as OpenPCDet does (the last one wins)', stacklevel=2)
        data = yaml.safe_load(path.read_text()) or {}
    except UnicodeDecodeError as err:
        raise ConfigError(f'{path}: not a text (YAML) file: {err}') from err
    except yaml.YAMLError as err:
        raise ConfigError(f'{path}: not valid YAML: {err}') from err
    if not isinstance(data, dict):
        raise ConfigError(f'{path}: top level must be a mapping')
    return _merge(EasyDict(), data, path, chain + (resolved,), roots, repeated_keys)


def cfg_from_yaml_file(path, cfg: EasyDict = None) -> EasyDict:
    """Load `path` (with its bases) into `cfg` (a new EasyDict by default) and return it."""
    cfg = EasyDict() if cfg is None else cfg
    cfg.update(load_yaml_with_bases(path))
    return cfg


def _parse_value(text: str, old):
    """Parse a `--set` value like OpenPCDet: Python literal if it parses, else the raw string."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    if isinstance(old, list) and isinstance(value, str) and ',' in value:
        value = [_parse_value(v, None) for v in value.split(',')]
    return value


def cfg_from_list(pairs, cfg: EasyDict) -> EasyDict:
    """Apply `--set KEY.SUB value ...` overrides; an unknown key or a type change is an error."""
    if len(pairs) % 2:
        raise ConfigError(f'--set needs KEY VALUE pairs, got {pairs}')
    for dotted, text in zip(pairs[0::2], pairs[1::2]):
        node = cfg
        keys = dotted.split('.')
        for depth, key in enumerate(keys[:-1]):
            if not isinstance(node, dict) or key not in node:
                raise ConfigError(f'--set {dotted}: unknown key {".".join(keys[:depth + 1])}')
            node = node[key]
        last = keys[-1]
        if not isinstance(node, dict) or last not in node:
            raise ConfigError(f'--set {dotted}: unknown key {dotted}')
        old = node[last]
        value = _parse_value(text, old)
        if old is not None and not _same_kind(old, value):
            raise ConfigError(f'--set {dotted}: expected {type(old).__name__} like {old!r}, got {text!r}')
        node[last] = EasyDict(value) if isinstance(value, dict) else value
    return cfg


def _same_kind(old, new) -> bool:
    numbers = (int, float)
    if isinstance(old, bool) or isinstance(new, bool):
        return isinstance(old, bool) and isinstance(new, bool)
    if isinstance(old, numbers) and isinstance(new, numbers):
        return not (isinstance(old, int) and isinstance(new, float) and not new.is_integer())
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
        return True
    return type(old) is type(new)


def add_config_arguments(parser, help_text='YAML config, e.g. cfgs/also_pretrain.yaml'):
    """The `--cfg_file`, `--detector_cfg`, `--data_cfg` and `--set KEY.SUB value ...` flags every tool takes."""
    parser.add_argument('--cfg_file', required=True, help=help_text)
    parser.add_argument('--detector_cfg', default=None,
                        help='an OpenPCDet detector config (e.g. OpenPCDet/tools/cfgs/kitti_models/voxel_rcnn_car.yaml) '
                             'whose backbone, range, voxels and point features are pretrained (overrides DETECTOR_CFG)')
    parser.add_argument('--data_cfg', action='append', default=None, metavar='YAML',
                        help='DATA_CONFIG keys to merge into the config (top level of the file, as in '
                             'cfgs/dataset_configs/), e.g. a SOURCES list; applied before --detector_cfg and --set; '
                             'repeatable (docs/multi_source.md)')
    parser.add_argument('--set', dest='set_cfgs', nargs=argparse.REMAINDER, default=None,
                        help='KEY.SUB value ... overrides, applied after the derivation (put it last)')
    add_debug_flag(parser)


def config_from_args(args, provenance: list = None) -> EasyDict:
    """Load `args.cfg_file`; when a detector config is named (`--detector_cfg`, else the YAML's DETECTOR_CFG),
    take its backbone and geometry (see `detector_config.derive_config`; its provenance lines are appended
    to `provenance`); then apply `args.set_cfgs`. The `args.data_cfg` files are merged in first (`merge_data_cfg`)."""
    from .detector_config import derive_from_file  # detector_config builds on this module

    cfg = cfg_from_yaml_file(args.cfg_file)
    for path in getattr(args, 'data_cfg', None) or ():
        merge_data_cfg(cfg, path)
    detector = getattr(args, 'detector_cfg', None)
    if detector is None and cfg.get('DETECTOR_CFG'):
        detector = resolve_config_path(cfg.DETECTOR_CFG, Path(args.cfg_file), key='DETECTOR_CFG')
    if detector is not None:
        cfg = derive_from_file(cfg, detector, provenance)
    if args.set_cfgs:
        cfg_from_list(args.set_cfgs, cfg)
    return cfg


def merge_data_cfg(cfg: EasyDict, path) -> EasyDict:
    """Merge the YAML file `path` (with its `_BASE_CONFIG_`) into `cfg.DATA_CONFIG`, as if its keys were written
    there: a key it names replaces the config's (a list, e.g. SOURCES, as a whole; a section key by key), a new
    key is added. Its keys sit at its top level, as in cfgs/dataset_configs/*.yaml."""
    data = load_yaml_with_bases(path)
    if 'DATA_CONFIG' in data:
        raise ConfigError(f'{path}: a --data_cfg file holds DATA_CONFIG keys at its top level (e.g. `SOURCES:`), '
                          f'not a DATA_CONFIG section')
    return _merge(cfg.setdefault('DATA_CONFIG', EasyDict()), data, Path(path), (), None)


def plain(value):
    """An EasyDict tree as plain dicts and lists (what yaml.safe_dump writes)."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def config_lines(cfg, prefix: str = 'cfg') -> list:
    """Every resolved key as OpenPCDet's `log_config_to_file` logs it: `cfg.DATA_CONFIG.VOXEL_SIZE: [...]`,
    with a `----------- SECTION -----------` line before each section."""
    lines = []
    for key, value in cfg.items():
        if isinstance(value, dict):
            lines.append(f'----------- {key} -----------')
            lines += config_lines(value, f'{prefix}.{key}')
        else:
            lines.append(f'{prefix}.{key}: {value}')
    return lines


def write_resolved_config(cfg, path, header: str = '') -> Path:
    """`cfg` after `_BASE_CONFIG_` and `--set` as one self-contained YAML file (`header` as comment lines)
    that `cfg_from_yaml_file` reads back to the same config."""
    path = Path(path)
    comments = ''.join(f'# {line}\n' for line in header.splitlines())
    path.write_text(comments + yaml.safe_dump(plain(cfg), sort_keys=False, default_flow_style=None))
    return path
