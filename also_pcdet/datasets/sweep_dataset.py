"""Sweeps to training samples: read, augment, decimate, draw in-range queries, crop, voxelize, collate."""
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.utils.data
from easydict import EasyDict

from ..errors import RunError
from .augmentation import RigidAugmentation
from .beam_drop import beam_drop_mask, checked_section
from .queries import QueryShortage, decimate, rays_reaching_range, sample_queries_in_range
from .ray_origins import RayOrigins, origin_arrays
from .readers import SweepError
from .sources import build_source
from .sweep_checks import MIN_VOXELS, check_sweep, inside_range
from .voxelizer import Voxelizer

QUERY_FIELDS = ('occupancy', 'intensity', 'intensity_mask')


class SweepDataset(torch.utils.data.Dataset):
    """Unlabelled lidar sweeps as ALSO samples, with the attributes OpenPCDet's detectors read
    (`point_cloud_range`, `voxel_size`, `grid_size`, `point_feature_encoder`, ...)."""

    def __init__(self, dataset_cfg, training: bool = True, root_path=None, seed: int = 0):
        self.dataset_cfg, self.training, self.seed = dataset_cfg, training, int(seed)
        # in shared memory: persistent loader workers see set_epoch() of the main process
        self.shared_epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.mode = 'train' if training else 'test'
        self.root_path = Path(root_path or dataset_cfg.DATA_PATH)
        self.class_names = list(dataset_cfg.get('CLASS_NAMES', []) or [])
        self.point_cloud_range = np.array(dataset_cfg.POINT_CLOUD_RANGE, dtype=np.float32)
        self.voxel_size = np.array(dataset_cfg.VOXEL_SIZE, dtype=np.float32)
        extent = self.point_cloud_range[3:6] - self.point_cloud_range[0:3]
        self.grid_size = np.round(extent / self.voxel_size).astype(np.int64)
        self.depth_downsample_factor = None
        encoding = dataset_cfg.POINT_FEATURE_ENCODING
        self.used_columns = [encoding.src_feature_list.index(f) for f in encoding.used_feature_list]
        self.point_feature_encoder = EasyDict(num_point_features=len(self.used_columns))
        self.source = build_source(dataset_cfg, self.root_path, dataset_cfg.DATA_SPLIT[self.mode])
        self.intensity_column = (encoding.src_feature_list.index('intensity')
                                 if 'intensity' in encoding.src_feature_list and self.source.MEASURED_INTENSITY
                                 else None)
        provided = list(self.source.FEATURES)
        # src_feature_list columns from the source's; a time lag it lacks (TIME_FEATURES) is 0 for one sweep
        self.src_columns = [provided.index(f) if f in provided else None for f in encoding.src_feature_list]
        self.stock_input_scale = [float(self.source.STOCK_INPUT_SCALE.get(f, 1.0))
                                  for f in encoding.used_feature_list]
        self.sample_ids = list(range(0, len(self.source), dataset_cfg.get('SAMPLE_INTERVAL', {}).get(self.mode, 1)))
        self.beam_drop = checked_section(dataset_cfg)  # None: off
        vox = dataset_cfg.VOXELIZATION
        self.voxelizer = Voxelizer(self.voxel_size, self.point_cloud_range, len(self.used_columns),
                                   vox.MAX_POINTS_PER_VOXEL, vox.MAX_NUMBER_OF_VOXELS[self.mode])

    def __len__(self):
        return len(self.sample_ids)

    @property
    def epoch(self) -> int:
        return int(self.shared_epoch)

    def set_epoch(self, epoch: int):
        """Queries and augmentation are drawn from (seed, epoch, index): set before each epoch (before
        iterating the loader; its persistent workers read the value from shared memory)."""
        self.shared_epoch.fill_(int(epoch))

    def __getitem__(self, index):
        """The sample at `index`; an unusable sweep is recorded in `skipped` and the next one is used,
        so every batch stays full (which DDP needs)."""
        skipped = []
        for attempt in range(len(self)):
            current = (index + attempt) % len(self)
            source_index = self.sample_ids[current]
            frame_id = self.source.frame_id(source_index)
            try:
                points, origin = (self.source.read(source_index, self.rng(current, stream=1))
                                  if self.source.RANDOM_READ else self.source.read(source_index))
                sample = self.prepare(points, origin, frame_id, current)
            except SweepError as err:
                skipped.append((self.source.location(source_index), err.reason))
                continue
            sample['skipped'] = skipped
            return sample
        raise RunError(f'no usable sweep under {self.root_path}: {len(skipped)} tried, e.g. {skipped[:3]}')

    def rng(self, index: int, stream: int = 0) -> np.random.Generator:
        """The generator of sample `index` this epoch; `stream` 1: the source's own draws when reading."""
        key = [self.seed, self.epoch if self.training else 0, index]
        return np.random.default_rng(key + [stream] if stream else key)

    def crop_mask(self, xyz: np.ndarray) -> np.ndarray:
        return inside_range(xyz, self.point_cloud_range)

    def prepare(self, points: np.ndarray, origin, frame_id: str, index: int) -> dict:
        """Turn one raw sweep (N, C) into a sample; raises SweepError if unusable (`check_sweep`, the verdict
        tools/scan_dataset.py gives too). `origin` is what the source's `read` returned: one sensor position
        (3,) or a RayOrigins (per-point ray origins; points with index -1 are network input only), see
        ray_origins.py."""
        check_sweep(points, origin, frame_id, self.source, self.point_cloud_range, self.voxel_size)
        if self.src_columns != list(range(points.shape[1])):
            points = np.stack([points[:, c] if c is not None else np.zeros(len(points), np.float32)
                               for c in self.src_columns], axis=1)
        table, origin_index = origin_arrays(origin, len(points), frame_id)
        if self.beam_drop is not None:  # before the queries: they come from the kept rays only
            kept = beam_drop_mask(points, table, origin_index, self.beam_drop)
            points, origin_index = points[kept], None if origin_index is None else origin_index[kept]
        augment = self.training and self.dataset_cfg.AUGMENTATION.ENABLED
        sample = self.make_sample(points, table, origin_index, frame_id, index, augment)
        if sample is None or len(sample['voxels']) < MIN_VOXELS:  # augmentation moved the sweep out of the box
            sample = self.make_sample(points, table, origin_index, frame_id, index, augment=False)
        if len(sample['voxels']) < MIN_VOXELS:
            raise SweepError(frame_id, f'only {len(sample["voxels"])} voxels after decimation and '
                                       f'MAX_INPUT_POINTS (at least {MIN_VOXELS})')
        sample['ray_origin_names'] = tuple(origin.names) if isinstance(origin, RayOrigins) else ()
        return sample

    def make_sample(self, points, table, origin_index, frame_id, index, augment: bool):
        """The sample of a checked sweep; None when the augmentation left fewer than MIN_VOXELS points in range.

        Order: augment the whole sweep (points and ray origins alike); decimate the hits inside the range
        together with those outside it whose ray can hold an in-range query (`rays_reaching_range`; a decimation
        cube never mixes the two); draw queries from every decimated hit with a known ray origin and keep those
        inside the range (`sample_queries_in_range`); the network input is the decimated in-range hits, capped at
        MAX_INPUT_POINTS."""
        cfg, rng = self.dataset_cfg, self.rng(index)
        if augment:
            augmentation = RigidAugmentation.draw(cfg.AUGMENTATION, rng)
            points, table = augmentation.apply(points), augmentation.apply(table)
        q_cfg, xyz = cfg.QUERIES, points[:, :3]
        inside = self.crop_mask(xyz)
        if augment and np.count_nonzero(inside) < MIN_VOXELS:
            return None
        outside = ~inside if origin_index is None else ~inside & (origin_index >= 0)
        origins = table[0] if origin_index is None else table[np.maximum(origin_index, 0)]
        candidate = inside | rays_reaching_range(xyz, origins, q_cfg.BAND, self.point_cloud_range, among=outside)
        candidates = np.flatnonzero(candidate)
        keep = candidates[decimate(xyz[candidates], q_cfg.DECIMATION_CELL, rng, group=inside[candidates])]
        seeds = keep if origin_index is None else keep[origin_index[keep] >= 0]
        if len(seeds) == 0:
            raise SweepError(frame_id, 'no point with a known ray origin has its ray through POINT_CLOUD_RANGE')
        intensity = (points[:, self.intensity_column] if self.intensity_column is not None
                     else np.zeros(len(points), dtype=np.float32))
        try:
            queries = sample_queries_in_range(xyz, intensity, table, q_cfg.NUM_QUERIES, q_cfg.BAND, rng,
                                              self.point_cloud_range, origin_index, seeds)
        except QueryShortage as err:
            raise SweepError(frame_id, str(err)) from err
        if self.intensity_column is None:
            queries['intensity_mask'][:] = 0
        query_hits = xyz[queries['source']].astype(np.float32)
        points = points[keep[inside[keep]]]
        cap = q_cfg.MAX_INPUT_POINTS
        if cap and len(points) > cap:
            points = points[np.sort(rng.choice(len(points), cap, replace=False))]
        points = np.ascontiguousarray(points[:, self.used_columns], dtype=np.float32)
        sample = {'frame_id': frame_id, 'points': points, 'queries': queries['xyz'], 'query_hits': query_hits,
                  'sensor_origin': table[0].astype(np.float32), 'ray_origins': table.astype(np.float32),
                  'query_origin_index': queries['origin_index']}
        sample.update({f'query_{name}': queries[name] for name in QUERY_FIELDS})
        sample.update(self.voxelizer(points))
        return sample

    @staticmethod
    def collate_batch(samples: list, with_points: bool = True) -> dict:
        """Stack samples into an OpenPCDet batch_dict; sweeps skipped on the way travel in `skipped`.
        `with_points=False` leaves out `points` (a model whose VFE reads voxels never looks at them)."""
        batch = {'batch_size': len(samples), 'frame_id': np.array([s['frame_id'] for s in samples]),
                 'skipped': [entry for s in samples for entry in s['skipped']]}
        if 'source_name' in samples[0]:  # multi-source runs (multi_source.py): the source of each sample and skip
            batch['source_name'] = [s['source_name'] for s in samples]
            batch['skipped_source'] = [s['source_name'] for s in samples for _ in s['skipped']]
        stacked = defaultdict(list)
        for b, sample in enumerate(samples):
            for key in ('points', 'voxel_coords', 'queries') if with_points else ('voxel_coords', 'queries'):
                stacked[key].append(np.pad(sample[key], ((0, 0), (1, 0)), constant_values=b))
            for key in ('voxels', 'voxel_num_points') + tuple(f'query_{n}' for n in QUERY_FIELDS):
                stacked[key].append(sample[key])
            stacked['sensor_origin'].append(sample['sensor_origin'][None])
        batch.update({key: np.concatenate(arrs, axis=0) for key, arrs in stacked.items()})
        return batch
