"""Official train/val splits, shipped as package data (also_pcdet/datasets/splits/*.txt):
- nuScenes: the scene names of the devkit's `splits.py` (700 train, 150 val; mini_train / mini_val for v1.0-mini),
  and official ALSO's split of the train scenes: `also_val` (the 100 it holds out for validation) and
  `also_train` (the other 600, what it pretrains on);
- KITTI raw: the 13 val drives of KITTI's depth benchmark (its official drive-level split); train is every
  other drive.
A layout's `all` keeps every sweep under DATA_PATH, val scenes included, and says so with a warning."""
import logging
from pathlib import Path

SPLITS_DIR = Path(__file__).parent / 'splits'
NUSCENES_SPLITS = ('train', 'val', 'mini_train', 'mini_val', 'also_train', 'also_val')
KITTI_RAW_SPLITS = ('train', 'val')
LOGGER = logging.getLogger('also_pcdet.datasets')


def shipped_list(name: str) -> list:
    """The entries of splits/<name>.txt (one per line; `#` lines are comments)."""
    lines = (SPLITS_DIR / f'{name}.txt').read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith('#')]


def nuscenes_scenes(split: str) -> set:
    """The scene names of a nuScenes split of NUSCENES_SPLITS (`also_train`: train minus `also_val`)."""
    if split == 'also_train':
        return set(shipped_list('nuscenes_train')) - set(shipped_list('nuscenes_also_val'))
    return set(shipped_list(f'nuscenes_{split}'))


def warn_all(layout: str, root):
    LOGGER.warning(f'{layout} DATA_SPLIT `all` under {root} includes the official val scenes: pretraining on it '
                   f'trains on them, and validation on it measures training data (train / val pick the official '
                   f'splits)')
