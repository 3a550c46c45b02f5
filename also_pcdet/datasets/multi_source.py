"""Several lidar datasets pretraining one target detector's backbone (`DATA_CONFIG.SOURCES`).

DATA_CONFIG is the target's: its POINT_CLOUD_RANGE, VOXEL_SIZE, POINT_FEATURE_ENCODING, VOXELIZATION, QUERIES,
AUGMENTATION and MAX_BAD_FRACTION apply to every source, and its DATASET layout sets the intensity convention of
the export (`STOCK_INPUT_SCALE`). Each SOURCES entry is a layout config (`_BASE_CONFIG_`, e.g.
cfgs/dataset_configs/waymo_processed_sweeps.yaml, and/or its keys inline: DATASET, DATA_PATH, DATA_SPLIT,
SAMPLE_INTERVAL, LIDAR_ORIGINS, ...) plus
- NAME: how logs and tensorboard call it (default: its DATASET; names must differ),
- WEIGHT: its share of each epoch's draws (default 1, see source_sampler.py),
- SHIFT_COOR: (x, y, z) added to its points and ray origins right after reading, before anything else
  (OpenPCDet's key of the same name): it moves the source's frame onto the target's, e.g. [0, 0, -1.73] puts
  Waymo's vehicle-frame ground (z ~ 0) where KITTI's lidar frame has it.
Each source keeps its own reader, ray origins, sweep checks and intensity reading: every reader returns intensity
on one scale, [0, 1] (KITTI reflectance as stored, nuScenes / ONCE / 255, Waymo tanh), and the export multiplies
it back into the target's stock scale, so a source's intensity reaches the target detector on the target's scale.
"""
import bisect
import copy
from pathlib import Path

import numpy as np
import torch.utils.data
from easydict import EasyDict

from ..config import REPO_ROOT, ConfigError, _merge
from .beam_drop import beam_drop_errors
from .ray_origins import RayOrigins
from .sources import SOURCES, TIME_FEATURES
from .sweep_dataset import SweepDataset

ENTRY_KEYS = {'NAME': str, 'WEIGHT': float}
# the target's keys, applied to every source (an entry may not set them)
TARGET_KEYS = ('POINT_CLOUD_RANGE', 'VOXEL_SIZE', 'POINT_FEATURE_ENCODING', 'VOXELIZATION', 'QUERIES',
               'AUGMENTATION', 'MAX_BAD_FRACTION')


def shift_sweep(points: np.ndarray, origin, shift):
    """(points, origin) of a source's `read` with `shift` (3,) added to x, y, z and to the ray origin(s)."""
    shift = np.asarray(shift, dtype=np.float64)
    points = points.copy()
    points[:, :3] += shift.astype(points.dtype)
    if isinstance(origin, RayOrigins):
        return points, origin._replace(table=np.asarray(origin.table, dtype=np.float64) + shift)
    return points, np.asarray(origin, dtype=np.float64) + shift


def source_configs(data_cfg) -> list:
    """One full DATA_CONFIG per SOURCES entry: its layout (`_BASE_CONFIG_`, looked up in the working directory,
    then the repository) and its own keys, then the target's TARGET_KEYS; NAME, WEIGHT and SHIFT_COOR filled in.
    A bad entry is a ConfigError naming it."""
    entries = data_cfg.get('SOURCES')
    if not isinstance(entries, (list, tuple)) or not entries:
        raise ConfigError(f'DATA_CONFIG.SOURCES must be a non-empty list of source entries, got {entries!r}')
    configs = []
    for i, entry in enumerate(entries):
        where = f'DATA_CONFIG.SOURCES[{i}]'
        if not isinstance(entry, dict):
            raise ConfigError(f'{where}: expected a mapping (a layout config and NAME / WEIGHT / SHIFT_COOR), '
                              f'got {entry!r}')
        fixed = [key for key in TARGET_KEYS if key in entry]
        if fixed:
            raise ConfigError(f'{where}: {", ".join(fixed)} cannot be set per source: the target\'s DATA_CONFIG '
                              f'values apply to every source')
        cfg = _merge(EasyDict(), copy.deepcopy(dict(entry)), Path(where), (), [Path.cwd(), REPO_ROOT])
        for key in TARGET_KEYS:
            if key in data_cfg:
                cfg[key] = copy.deepcopy(data_cfg[key])
        cfg.setdefault('NAME', str(cfg.get('DATASET')))
        cfg.setdefault('WEIGHT', 1.0)
        cfg.setdefault('SHIFT_COOR', [0.0, 0.0, 0.0])
        configs.append(cfg)
    return configs


def missing_features(target_data, source_cfg) -> list:
    """Point features the target detector is fed that the source's sweeps lack (a time lag is 0 for a single
    sweep; an intensity the source's files hold only as a constant counts as lacking, unless the target's does too)."""
    target, source = SOURCES[target_data.DATASET], SOURCES[source_cfg.DATASET]
    used = target_data.POINT_FEATURE_ENCODING.used_feature_list
    missing = [f for f in used if f not in source.FEATURES and f not in TIME_FEATURES]
    constant = target.MEASURED_INTENSITY and not source.MEASURED_INTENSITY
    if 'intensity' in used and 'intensity' not in missing and constant:
        missing.append('intensity (its files hold a constant)')
    return missing


def source_errors(data_cfg, target_name: str = None) -> list:
    """Every problem of DATA_CONFIG.SOURCES (bad entries, unknown keys, a feature the target uses that a source
    lacks, a missing DATA_PATH), naming the entry; [] when it is usable."""
    from ..config_checks import schema_errors
    from ..config_schema import DATA_CONFIG, DATASET_KEYS, XYZ, Required
    try:
        configs = source_configs(data_cfg)
    except ConfigError as err:
        return [str(err)]
    target_name = target_name or data_cfg.DATASET
    errors, names = [], {}
    for i, cfg in enumerate(configs):
        where = f'DATA_CONFIG.SOURCES[{i}]'
        if cfg.get('DATASET') not in DATASET_KEYS:
            errors.append(f'{where}.DATASET {cfg.get("DATASET")!r} is not a known dataset layout (known: '
                          f'{", ".join(sorted(DATASET_KEYS))}); name one with _BASE_CONFIG_: cfgs/dataset_configs/...')
            continue
        schema = dict(DATA_CONFIG, **DATASET_KEYS[cfg.DATASET], **ENTRY_KEYS, SHIFT_COOR=Required(XYZ))
        problems = schema_errors(cfg, schema, f'{where}.')
        errors += problems
        if problems:
            continue
        names.setdefault(cfg.NAME, []).append(i)
        if not 0 < cfg.WEIGHT < float('inf'):
            errors.append(f'{where}.WEIGHT must be a positive number, got {cfg.WEIGHT!r}')
        errors += beam_drop_errors(cfg.get('BEAM_DROP'), f'{where}.BEAM_DROP')
        missing = missing_features(data_cfg, cfg)
        if missing:
            errors.append(f'{where} {cfg.NAME} ({cfg.DATASET} sweeps, features {list(SOURCES[cfg.DATASET].FEATURES)}) '
                          f'lacks {missing}, which the target {target_name} feeds its detector (used_feature_list '
                          f'{list(data_cfg.POINT_FEATURE_ENCODING.used_feature_list)}): drop the source, or pretrain '
                          f'a detector without that feature')
        if not Path(cfg.DATA_PATH).exists():
            errors.append(f'{where}.DATA_PATH {cfg.DATA_PATH!r} does not exist')
    errors += [f'DATA_CONFIG.SOURCES{indices}: the same NAME {name!r}; give each source its own NAME'
               for name, indices in names.items() if len(indices) > 1]
    per_epoch = data_cfg.get('SWEEPS_PER_EPOCH')
    if per_epoch is not None and (not isinstance(per_epoch, int) or isinstance(per_epoch, bool) or per_epoch < 1):
        errors.append(f'DATA_CONFIG.SWEEPS_PER_EPOCH must be a positive integer or null, got {per_epoch!r}')
    return errors


class SourceSweeps(SweepDataset):
    """One source of a multi-source run: its own reader and checks, shifted by SHIFT_COOR, in the target's grid.
    Its samples carry `source_name`; its random draws depend on its position too."""

    def __init__(self, source_cfg, position: int, training: bool = True, seed: int = 0):
        super().__init__(source_cfg, training=training, seed=seed)
        self.name, self.position = source_cfg.NAME, int(position)
        self.shift = np.asarray(source_cfg.SHIFT_COOR, dtype=np.float64)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.position, self.epoch if self.training else 0, index])

    def prepare(self, points, origin, frame_id: str, index: int) -> dict:
        return super().prepare(*shift_sweep(points, origin, self.shift), frame_id, index)

    def __getitem__(self, index):
        sample = super().__getitem__(index)
        sample['source_name'] = self.name   # a skipped sweep is replaced by one of the same source
        return sample


class MultiSourceDataset(torch.utils.data.Dataset):
    """The SOURCES of a DATA_CONFIG as one dataset: index = the source's offset + its sample index. It has
    SweepDataset's attributes the model and trainer read; `stock_input_scale` is the target layout's."""

    def __init__(self, dataset_cfg, training: bool = True, seed: int = 0):
        errors = source_errors(dataset_cfg)
        if errors:
            raise ConfigError('bad DATA_CONFIG.SOURCES:\n  ' + '\n  '.join(errors))
        self.dataset_cfg, self.training = dataset_cfg, training
        self.mode = 'train' if training else 'test'
        self.sources = [SourceSweeps(cfg, i, training, seed) for i, cfg in enumerate(source_configs(dataset_cfg))]
        first = self.sources[0]
        for key in ('class_names', 'point_cloud_range', 'voxel_size', 'grid_size', 'depth_downsample_factor',
                    'point_feature_encoder', 'used_columns'):
            setattr(self, key, getattr(first, key))
        target = SOURCES[dataset_cfg.DATASET]
        self.stock_input_scale = [float(target.STOCK_INPUT_SCALE.get(f, 1.0))
                                  for f in dataset_cfg.POINT_FEATURE_ENCODING.used_feature_list]
        self.source_names = [s.name for s in self.sources]
        self.weights = [float(s.dataset_cfg.WEIGHT) for s in self.sources]
        self.lengths = [len(s) for s in self.sources]
        self.offsets = list(np.cumsum([0] + self.lengths[:-1]))
        self.sample_ids = range(len(self))  # with `location`, what the trainer reads of a SweepDataset's source
        self.source = self
        self._seed = int(seed)

    def __len__(self):
        return sum(self.lengths)

    def describe(self) -> str:
        return (f'{len(self)} {self.mode} sweeps from {len(self.sources)} sources: '
                + ', '.join(f'{s.name} {len(s)} ({s.dataset_cfg.DATASET} {s.root_path}, weight '
                            f'{s.dataset_cfg.WEIGHT:g}, shift {s.shift.tolist()})' for s in self.sources))

    def locate(self, index: int) -> tuple:
        """(source position, index within that source) of a dataset index."""
        position = bisect.bisect_right(self.offsets, index) - 1
        return position, index - self.offsets[position]

    def location(self, index: int) -> str:
        position, local = self.locate(index)
        source = self.sources[position]
        return source.source.location(source.sample_ids[local])

    @property
    def seed(self) -> int:
        return self._seed

    @seed.setter
    def seed(self, value: int):
        self._seed = int(value)
        for source in self.sources:
            source.seed = int(value)

    @property
    def epoch(self) -> int:
        return self.sources[0].epoch

    def set_epoch(self, epoch: int):
        for source in self.sources:
            source.set_epoch(epoch)

    def __getitem__(self, index):
        position, local = self.locate(index)
        return self.sources[position][local]

    collate_batch = staticmethod(SweepDataset.collate_batch)
