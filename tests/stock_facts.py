"""OpenPCDet's stock backbone facts (tests/facts/stock_backbones.json) and the fallback build of each config."""
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from easydict import EasyDict

from also_pcdet.datasets.voxelizer import Voxelizer

from also_pcdet.engine.pretrained_check import SECTIONS, BackboneParts

FACTS = Path(__file__).parent / 'facts' / 'stock_backbones.json'
MODULES = ('vfe', 'backbone_3d', 'map_to_bev_module', 'backbone_2d')


@lru_cache(maxsize=None)
def stock_configs() -> dict:
    """{config path: fact entry} for all 58 stock configs."""
    return {entry['config']: entry for entry in json.loads(FACTS.read_text())['configs']}


def configs_of(*families) -> list:
    """The stock config paths of `families`, sorted."""
    return sorted(name for name, entry in stock_configs().items() if entry['family'] in families)


def detector_cfg(entry, **geometry) -> EasyDict:
    """A detector config with the fact entry's geometry, point features and backbone sections; `geometry`
    overrides POINT_CLOUD_RANGE / VOXEL_SIZE (e.g. a small crop for a cheap forward)."""
    return EasyDict({
        'CLASS_NAMES': entry['class_names'],
        'DATA_CONFIG': {
            'POINT_CLOUD_RANGE': geometry.get('POINT_CLOUD_RANGE', entry['point_cloud_range']),
            'VOXEL_SIZE': geometry.get('VOXEL_SIZE', entry['voxel_size']),
            'POINT_FEATURE_ENCODING': {'used_feature_list': entry['used_feature_list']},
        },
        'MODEL': {'NAME': entry['detector'], **{s: entry[s] for s in SECTIONS if entry[s] is not None}},
    })


def with_stock_backbone(cfg, stock: str):
    """The ALSO config `cfg` with the VFE / BACKBONE_3D / MAP_TO_BEV / BACKBONE_2D of stock config `stock` (and
    the head input its BEV map has); its DATA_CONFIG is kept, e.g. tiny synthetic KITTI sweeps for any backbone."""
    entry = stock_configs()[stock]
    for section in SECTIONS:
        cfg.MODEL.pop(section, None)
        if entry[section] is not None:
            cfg.MODEL[section] = entry[section]
    cfg.MODEL.DENSE_HEAD.INPUT_FEATURES = entry['num_bev_features']   # read when no BEV module tells the head
    return cfg


def build_stock(entry, **geometry) -> BackboneParts:
    """The config's VFE / BACKBONE_3D / MAP_TO_BEV / BACKBONE_2D, built as OpenPCDet's template builds them."""
    return BackboneParts(detector_cfg(entry, **geometry))


def module_layout(model, module) -> list:
    """[[key, shape], ...] of `model`'s state_dict entries under `module`, in order (the facts' format)."""
    return [[key, list(value.shape)] for key, value in model.state_dict().items() if key.startswith(module + '.')]


def crop(entry, cells):
    """The config's range cut to `cells` x `cells` voxels in x-y from its corner (full height)."""
    low, voxel = np.array(entry['point_cloud_range'][:3]), np.array(entry['voxel_size'])
    high = np.round(low[:2] + cells * voxel[:2], 6)
    return [float(v) for v in (*low, *high, entry['point_cloud_range'][5])]


def synthetic_batch(entry, pc_range, batch_size=2, num_points=1500, seed=0):
    """Uniform points with the config's features inside `pc_range`, voxelized with its settings."""
    rng = np.random.default_rng(seed)
    low, high = np.array(pc_range[:3]), np.array(pc_range[3:])
    points, voxels, coords, counts = [], [], [], []
    voxelize = Voxelizer(entry['voxel_size'], pc_range, entry['num_point_features'],
                         entry['max_points_per_voxel'] or 32, 100000)  # dynamic VFEs: no cap
    for b in range(batch_size):
        cloud = np.concatenate([rng.uniform(low, high, (num_points, 3)),
                                rng.random((num_points, entry['num_point_features'] - 3))], 1).astype(np.float32)
        sample = voxelize(cloud)
        points.append(np.pad(cloud, ((0, 0), (1, 0)), constant_values=b))
        voxels.append(sample['voxels'])
        coords.append(np.pad(sample['voxel_coords'], ((0, 0), (1, 0)), constant_values=b))
        counts.append(sample['voxel_num_points'])
    return {'points': torch.from_numpy(np.concatenate(points)), 'voxels': torch.from_numpy(np.concatenate(voxels)),
            'voxel_coords': torch.from_numpy(np.concatenate(coords)),
            'voxel_num_points': torch.from_numpy(np.concatenate(counts)), 'batch_size': batch_size}
