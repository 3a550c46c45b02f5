"""Fallback for OpenPCDet's `Detector3DTemplate` (voxel path only) and its checkpoint loader."""
import os

import torch
from spconv.pytorch.conv import SparseConvolution
from torch import nn

from .backbones import BACKBONES_2D, BACKBONES_3D, MAP_TO_BEV, VFES

DENSE_HEADS = {}  # filled by `pcdet_seam.register`
DATASET_ATTRIBUTES = ('point_feature_encoder', 'grid_size', 'point_cloud_range', 'voxel_size',
                      'depth_downsample_factor', 'class_names')
NEEDS_OPENPCDET = ('PFE', 'POINT_HEAD', 'ROI_HEAD')


def match_state_dict(model_state_disk, model_state, spconv_keys=None):
    """Select the checkpoint entries that fit the model, as OpenPCDet's loader does.

    An entry is kept when its key is in `model_state` and its shape matches; a 5-D spconv 1.x
    weight (kD, kH, kW, in, out) is first permuted to the 2.x layout (out, kD, kH, kW, in) when
    that makes the shapes match. `spconv_keys` limits that permutation to those keys (None: any
    5-D weight). Returns (loaded {key: tensor}, not_updated [model keys not loaded, in order])."""
    loaded = {}
    for key, value in model_state_disk.items():
        if key not in model_state:
            continue
        target = model_state[key].shape
        if (value.shape != target and value.dim() == 5 and len(target) == 5
                and (spconv_keys is None or key in spconv_keys)):
            permuted = value.permute(4, 0, 1, 2, 3)
            if permuted.shape == target:
                value = permuted.contiguous()
        if value.shape == target:
            loaded[key] = value
    return loaded, [key for key in model_state if key not in loaded]


def spconv_weight_keys(model):
    """state_dict keys of the sparse convolution weights in `model`."""
    return {f'{name}.weight' for name, module in model.named_modules()
            if isinstance(module, SparseConvolution)}


class DetectorTemplate(nn.Module):
    """Mirror of `Detector3DTemplate(model_cfg, num_class, dataset)`: subclasses call
    `self.module_list = self.build_networks()` and define `forward`."""

    def __init__(self, model_cfg, num_class, dataset):
        super().__init__()
        missing = [name for name in DATASET_ATTRIBUTES if not hasattr(dataset, name)]
        if missing:
            raise TypeError(f"the dataset must provide {', '.join(missing)} (like OpenPCDet's DatasetTemplate)")
        self.model_cfg = model_cfg
        self.num_class = num_class
        self.dataset = dataset
        self.class_names = dataset.class_names
        self.register_buffer('global_step', torch.zeros(1, dtype=torch.long))
        self.module_topology = ['vfe', 'backbone_3d', 'map_to_bev_module', 'pfe',
                                'backbone_2d', 'dense_head', 'point_head', 'roi_head']

    @property
    def mode(self):
        return 'TRAIN' if self.training else 'TEST'

    def update_global_step(self):
        self.global_step += 1

    def build_networks(self):
        """Build each configured module in topology order; return them as a list."""
        unsupported = [section for section in NEEDS_OPENPCDET if self.model_cfg.get(section) is not None]
        if unsupported:
            raise NotImplementedError(
                f"MODEL sections {', '.join(unsupported)} need OpenPCDet (pcdet), which is not installed; "
                f"without it only VFE, BACKBONE_3D, MAP_TO_BEV, BACKBONE_2D and DENSE_HEAD are built")
        info = {
            'module_list': [],
            'num_rawpoint_features': self.dataset.point_feature_encoder.num_point_features,
            'num_point_features': self.dataset.point_feature_encoder.num_point_features,
            'grid_size': self.dataset.grid_size,
            'point_cloud_range': self.dataset.point_cloud_range,
            'voxel_size': self.dataset.voxel_size,
            'depth_downsample_factor': self.dataset.depth_downsample_factor,
        }
        for name in self.module_topology:
            build = getattr(self, f'build_{name}', None)  # pfe, point_head, roi_head: rejected above
            module = build(info) if build is not None else None
            if module is not None:
                info['module_list'].append(module)
            self.add_module(name, module)
        return info['module_list']

    def _make(self, section, registry, **kwargs):
        cfg = self.model_cfg.get(section)
        if cfg is None:
            return None
        if cfg.NAME not in registry:
            raise KeyError(f"unknown {section} NAME {cfg.NAME!r}; without OpenPCDet the known ones are "
                           f"{sorted(registry)} (install OpenPCDet for the others)")
        return registry[cfg.NAME](model_cfg=cfg, **kwargs)

    def build_vfe(self, info):
        module = self._make('VFE', VFES, num_point_features=info['num_rawpoint_features'],
                            point_cloud_range=info['point_cloud_range'], voxel_size=info['voxel_size'],
                            grid_size=info['grid_size'], depth_downsample_factor=info['depth_downsample_factor'])
        if module is not None:
            info['num_point_features'] = module.get_output_feature_dim()
        return module

    def build_backbone_3d(self, info):
        module = self._make('BACKBONE_3D', BACKBONES_3D, input_channels=info['num_point_features'],
                            grid_size=info['grid_size'], voxel_size=info['voxel_size'],
                            point_cloud_range=info['point_cloud_range'])
        if module is not None:
            info['num_point_features'] = module.num_point_features
            info['backbone_channels'] = getattr(module, 'backbone_channels', None)
        return module

    def build_map_to_bev_module(self, info):
        module = self._make('MAP_TO_BEV', MAP_TO_BEV, grid_size=info['grid_size'])
        if module is not None:
            info['num_bev_features'] = module.num_bev_features
        return module

    def build_backbone_2d(self, info):
        module = self._make('BACKBONE_2D', BACKBONES_2D, input_channels=info.get('num_bev_features'))
        if module is not None:
            info['num_bev_features'] = module.num_bev_features
        return module

    def build_dense_head(self, info):
        cfg = self.model_cfg.get('DENSE_HEAD')
        if cfg is None:
            return None
        return self._make('DENSE_HEAD', DENSE_HEADS,
                          input_channels=info['num_bev_features'] if 'num_bev_features' in info else cfg.INPUT_FEATURES,
                          num_class=1 if cfg.get('CLASS_AGNOSTIC', False) else self.num_class,
                          class_names=self.class_names, grid_size=info['grid_size'],
                          point_cloud_range=info['point_cloud_range'],
                          predict_boxes_when_training=self.model_cfg.get('ROI_HEAD', False),
                          voxel_size=info.get('voxel_size', False))

    def load_params_from_file(self, filename, logger, to_cpu=False):
        """Load the matching weights of an OpenPCDet checkpoint's `model_state` (non-strict).

        Logs every model key left untouched and `==> Done (loaded N/M)`; returns (N, M)."""
        if not os.path.isfile(filename):
            raise FileNotFoundError(filename)
        on_cpu = to_cpu or not torch.cuda.is_available()
        logger.info(f"==> Loading parameters from checkpoint {filename} to {'CPU' if on_cpu else 'GPU'}")
        checkpoint = torch.load(filename, map_location=torch.device('cpu') if on_cpu else None, weights_only=True)
        if not isinstance(checkpoint, dict) or 'model_state' not in checkpoint:
            found = list(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
            raise KeyError(f"{filename} is not an OpenPCDet checkpoint: no 'model_state' entry (found {found})")
        if checkpoint.get('version') is not None:
            logger.info(f"==> Checkpoint trained from version: {checkpoint['version']}")

        state_dict = self.state_dict()
        loaded, not_updated = match_state_dict(checkpoint['model_state'], state_dict, spconv_weight_keys(self))
        state_dict.update(loaded)
        self.load_state_dict(state_dict)
        for key in not_updated:
            logger.info(f'Not updated weight {key}: {state_dict[key].shape}')
        logger.info(f'==> Done (loaded {len(loaded)}/{len(state_dict)})')
        return len(loaded), len(state_dict)
