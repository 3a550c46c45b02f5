"""Fallback OpenPCDet modules (used when pcdet is absent), in registries keyed like OpenPCDet's."""
from .base_bev_backbone import BaseBEVBackbone
from .dynamic_mean_vfe import DynMeanVFE
from .height_compression import HeightCompression
from .mean_vfe import MeanVFE
from .pillar_scatter import PointPillarScatter
from .pillar_vfe import DynPillarVFE, PillarVFE
from .spconv_backbone import VoxelBackBone8x, VoxelResBackBone8x

VFES = {'MeanVFE': MeanVFE, 'DynMeanVFE': DynMeanVFE, 'PillarVFE': PillarVFE, 'DynPillarVFE': DynPillarVFE}
BACKBONES_3D = {'VoxelBackBone8x': VoxelBackBone8x, 'VoxelResBackBone8x': VoxelResBackBone8x}
MAP_TO_BEV = {'HeightCompression': HeightCompression, 'PointPillarScatter': PointPillarScatter}
BACKBONES_2D = {'BaseBEVBackbone': BaseBEVBackbone}

__all__ = ['VFES', 'BACKBONES_3D', 'MAP_TO_BEV', 'BACKBONES_2D', 'MeanVFE', 'DynMeanVFE', 'PillarVFE',
           'DynPillarVFE', 'VoxelBackBone8x', 'VoxelResBackBone8x', 'HeightCompression', 'PointPillarScatter',
           'BaseBEVBackbone']
