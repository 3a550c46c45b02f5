"""File readers: one function per on-disk sweep format, each raising SweepError on bad input."""
from .errors import SweepError
from .kitti_bin import read_float32_records

__all__ = ['SweepError', 'read_float32_records']
