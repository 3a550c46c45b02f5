"""Write synthetic sweeps in the KITTI 3D-object layout (velodyne .bin + SemanticKITTI-style labels)."""
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .lidar import HDL64, LidarModel, scan
from .scene import make_scene


def make_sweep(seed: int, index: int, lidar: LidarModel = HDL64) -> dict:
    """Sweep `index` of the stream `seed`: its own scene and noise, seeded from (seed, index)."""
    rng = np.random.default_rng([seed, index])
    return scan(make_scene(rng), lidar=lidar, rng=rng)


def _write_frame(index, root, seed, lidar):
    sweep = make_sweep(seed, index, lidar)
    name = f'{index:06d}'
    sweep['points'].tofile(root / 'training' / 'velodyne' / f'{name}.bin')
    sweep['labels'].astype(np.uint32).tofile(root / 'training' / 'semantic' / f'{name}.label')
    return len(sweep['points'])


def write_kitti_object(root, num_sweeps, seed, val_every=5, lidar=HDL64, *, workers=1, progress=False):
    """Write root/training/velodyne/NNNNNN.bin (float32 x, y, z, intensity),
    root/training/semantic/NNNNNN.label (uint32 class id per point, same order) and
    root/ImageSets/{train,val}.txt; frames whose index is a multiple of val_every go to val."""
    root = Path(root)
    for sub in ('training/velodyne', 'training/semantic', 'ImageSets'):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ids = [f'{i:06d}' for i in range(num_sweeps)]
    (root / 'ImageSets' / 'train.txt').write_text(''.join(f'{s}\n' for i, s in enumerate(ids) if i % val_every))
    (root / 'ImageSets' / 'val.txt').write_text(''.join(f'{s}\n' for i, s in enumerate(ids) if not i % val_every))

    job = partial(_write_frame, root=root, seed=seed, lidar=lidar)
    bar = tqdm(total=num_sweeps, desc='sweeps', unit='sweep', disable=not progress)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(job, range(num_sweeps)):
                bar.update()
    else:
        for i in range(num_sweeps):
            job(i)
            bar.update()
    bar.close()
