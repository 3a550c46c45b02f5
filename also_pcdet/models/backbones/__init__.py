"""Fallback OpenPCDet modules (used when pcdet is absent), in registries keyed like OpenPCDet's."""
from .base_bev_backbone import BaseBEVBackbone, BaseBEVBackboneV1
from .dynamic_mean_vfe import DynMeanVFE
from .height_compression import HeightCompression
from .mean_vfe import MeanVFE
from .pillar_scatter import PointPillarScatter
from .pillar_vfe import DynamicPillarVFESimple2D, DynPillarVFE, PillarVFE
from .spconv_backbone import VoxelBackBone8x, VoxelResBackBone8x
from .spconv_backbone_2d import PillarBackBone8x, PillarRes18BackBone8x
from .spconv_backbone_voxelnext import VoxelResBackBone8xVoxelNeXt, VoxelResBackBone8xVoxelNeXt2D

VFES = {'MeanVFE': MeanVFE, 'DynMeanVFE': DynMeanVFE, 'PillarVFE': PillarVFE, 'DynPillarVFE': DynPillarVFE,
        'DynamicPillarVFESimple2D': DynamicPillarVFESimple2D}
BACKBONES_3D = {'VoxelBackBone8x': VoxelBackBone8x, 'VoxelResBackBone8x': VoxelResBackBone8x,
                'PillarBackBone8x': PillarBackBone8x, 'PillarRes18BackBone8x': PillarRes18BackBone8x,
                'VoxelResBackBone8xVoxelNeXt': VoxelResBackBone8xVoxelNeXt,
                'VoxelResBackBone8xVoxelNeXt2D': VoxelResBackBone8xVoxelNeXt2D}
MAP_TO_BEV = {'HeightCompression': HeightCompression, 'PointPillarScatter': PointPillarScatter}
BACKBONES_2D = {'BaseBEVBackbone': BaseBEVBackbone, 'BaseBEVBackboneV1': BaseBEVBackboneV1}

__all__ = ['VFES', 'BACKBONES_3D', 'MAP_TO_BEV', 'BACKBONES_2D', *(
    cls.__name__ for registry in (VFES, BACKBONES_3D, MAP_TO_BEV, BACKBONES_2D) for cls in registry.values())]
