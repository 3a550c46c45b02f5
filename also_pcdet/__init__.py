"""also-pcdet: ALSO occupancy pretraining for OpenPCDet voxel backbones.

Importing the package checks spconv (and patches its CPU backward when CUDA is absent) and,
when OpenPCDet is importable, registers the `ALSO` detector and `AlsoOccupancyHead` into its registries.
"""
from .spconv_compat import ensure_spconv
from .version import __version__

ensure_spconv()

from . import models  # noqa: E402  (registration needs spconv ready)

__all__ = ['__version__', 'models']
