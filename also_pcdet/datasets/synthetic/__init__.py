"""Synthetic spinning lidar over procedural street scenes (for tests and demos)."""
from .kitti_writer import make_sweep, write_kitti_object
from .lidar import HDL64, LidarModel, cast_rays, scan
from .scene import CLASS_NAMES, Scene, make_scene

__all__ = ['CLASS_NAMES', 'HDL64', 'LidarModel', 'Scene', 'cast_rays', 'make_scene', 'make_sweep', 'scan',
           'write_kitti_object']
