"""Write synthetic sweeps in the KITTI 3D-object layout: velodyne .bin, SemanticKITTI-style per-point labels,
and everything OpenPCDet's KITTI info generation reads (label_2, calib, image_2, planes, ImageSets)."""
import struct
import zlib
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..readers.kitti_label import (Calibration, Labels, format_calib, format_labels, lidar_boxes_to_camera,
                                   points_in_boxes, box_corners)
from .lidar import HDL64, LidarModel, cast_rays, scan
from .scene import PERSON, VEHICLE, Boxes, Cylinders, Ground, Scene, make_scene

IMAGE_SIZE = (1242, 375)  # width, height of KITTI's camera 2 images
# KITTI-like camera 2 intrinsics; the camera sits at the lidar (x forward, y left, z up -> x right, y down,
# z forward), so R0_rect is the identity and Tr_velo_to_cam a pure axis permutation.
SYNTHETIC_CALIB = Calibration(
    P2=np.array([[721.5377, 0.0, 609.5593, 0.0], [0.0, 721.5377, 172.854, 0.0], [0.0, 0.0, 1.0, 0.0]]),
    R0_rect=np.eye(3),
    Tr_velo_to_cam=np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [1.0, 0.0, 0.0, 0.0]]))
OBJECT_MARGIN = 0.1  # m: a point this close to an object's box (range noise) belongs to it
KITTI_SUBDIRS = ('velodyne', 'semantic', 'label_2', 'calib', 'image_2', 'planes')


def make_sweep(seed: int, index: int, lidar: LidarModel = HDL64) -> dict:
    """Sweep `index` of the stream `seed`: its own scene and noise, seeded from (seed, index). The dict
    from `scan` plus 'scene' (world frame: the sensor frame shifted down by the lidar's mount height)."""
    rng = np.random.default_rng([seed, index])
    scene = make_scene(rng)
    return dict(scan(scene, lidar=lidar, rng=rng), scene=scene)


def object_boxes(scene: Scene, lidar: LidarModel = HDL64) -> np.ndarray:
    """(N, 7) lidar-frame boxes (x, y, z centre, length, width, height, heading) of the scene's objects."""
    rows = [(*o.center, *o.size, o.yaw) for o in scene.objects]
    boxes = np.array(rows, dtype=np.float64).reshape(-1, 7)
    boxes[:, 2] -= lidar.mount_height
    return boxes


def _visible_fraction(scene, obj, box, sweep_hits, lidar, directions, azimuths):
    """Returns of the object in the sweep over the returns it would give alone (no occluders, no dropout);
    only the rays within the azimuths of the object's lidar-frame `box` are cast."""
    alone = Scene(Ground(z=-1e9), Boxes(*(getattr(scene.boxes, f)[list(obj.boxes)] for f in
                                        ('center', 'size', 'yaw', 'cls', 'refl'))),
                  Cylinders(*(getattr(scene.cylinders, f)[list(obj.cylinders)] for f in
                              ('center', 'z0', 'z1', 'radius', 'cls', 'refl'))))
    centre = np.arctan2(box[1], box[0])
    corners = box_corners(box)[0]
    offsets = np.mod(np.arctan2(corners[:, 1], corners[:, 0]) - centre + np.pi, 2 * np.pi) - np.pi
    relative = np.mod(azimuths - centre + np.pi, 2 * np.pi) - np.pi
    rays = (relative >= offsets.min() - 0.01) & (relative <= offsets.max() + 0.01)
    if np.ptp(offsets) > np.pi / 2:  # the sensor is (almost) inside the box: cast every ray
        rays[:] = True
    ranges = cast_rays(alone, (0.0, 0.0, lidar.mount_height), directions[rays], lidar.max_range)[0]
    expected = np.count_nonzero((ranges >= lidar.min_range) & (ranges <= lidar.max_range)) * (1 - lidar.dropout)
    return min(1.0, sweep_hits / expected) if expected > 0 else 0.0


def kitti_labels(sweep: dict, lidar: LidarModel = HDL64, calib: Calibration = SYNTHETIC_CALIB) -> tuple:
    """KITTI labels of the objects that are hit by at least one return and seen by camera 2 (box centre in
    front of it, 2D box inside the image), and their lidar boxes. Truncation is the share of the projected
    box outside the image; occlusion 0 / 1 / 2 when at least 80 % / 40 % / less of the returns the object
    would give alone reach the sensor."""
    scene = sweep['scene']
    boxes = object_boxes(scene, lidar)
    objects_points = np.isin(sweep['labels'], (VEHICLE, PERSON))
    hits = points_in_boxes(sweep['points'][objects_points], boxes, OBJECT_MARGIN).sum(0)
    width, height = IMAGE_SIZE
    directions = lidar.directions().reshape(-1, 3)
    azimuths = np.arctan2(directions[:, 1], directions[:, 0])
    rows, kept = [], []
    for i, obj in enumerate(scene.objects):
        if hits[i] == 0 or calib.lidar_to_rect(boxes[i, :3])[0, 2] <= 0.5:
            continue
        corners = calib.lidar_to_rect(box_corners(boxes[i])[0])
        corners[:, 2] = np.maximum(corners[:, 2], 0.1)
        uv, _ = calib.rect_to_image(corners)
        full = np.concatenate([uv.min(0), uv.max(0)])
        clipped = np.clip(full, 0, [width - 1, height - 1, width - 1, height - 1])
        area = np.prod(clipped[2:] - clipped[:2])
        if area <= 0:
            continue
        truncated = 1.0 - area / np.prod(full[2:] - full[:2])
        visible = _visible_fraction(scene, obj, boxes[i], hits[i], lidar, directions, azimuths)
        occluded = 0 if visible >= 0.8 else 1 if visible >= 0.4 else 2
        rows.append((obj.kind, truncated, occluded, clipped))
        kept.append(i)
    boxes = boxes[kept]
    hwl, location, rotation_y = lidar_boxes_to_camera(boxes, calib)
    alpha = rotation_y - np.arctan2(location[:, 0], location[:, 2])  # observation angle
    labels = Labels(np.array([r[0] for r in rows], dtype=str), np.array([r[1] for r in rows]),
                    np.array([r[2] for r in rows], dtype=int), np.mod(alpha + np.pi, 2 * np.pi) - np.pi,
                    np.array([r[3] for r in rows]).reshape(-1, 4), hwl, location, rotation_y)
    return labels, boxes


@lru_cache(maxsize=1)
def blank_png(width: int = IMAGE_SIZE[0], height: int = IMAGE_SIZE[1]) -> bytes:
    """A black 8-bit RGB PNG (OpenPCDet reads the image size from image_2/<id>.png)."""
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    raw = (b'\x00' + bytes(3 * width)) * height  # filter byte 0 per row
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(raw, 9)) + chunk(b'IEND', b''))


def plane_text(lidar: LidarModel = HDL64) -> str:
    """KITTI road plane file: a, b, c, d of a x + b y + c z + d = 0 in the rectified camera frame."""
    return f'# Matrix\nWIDTH 4\nHEIGHT 1\n0.000000e+00 -1.000000e+00 0.000000e+00 {lidar.mount_height:.6e}\n'


def _write_frame(index, root, seed, lidar):
    sweep = make_sweep(seed, index, lidar)
    name, training = f'{index:06d}', root / 'training'
    sweep['points'].tofile(training / 'velodyne' / f'{name}.bin')
    sweep['labels'].astype(np.uint32).tofile(training / 'semantic' / f'{name}.label')
    labels, _ = kitti_labels(sweep, lidar)
    (training / 'label_2' / f'{name}.txt').write_text(format_labels(labels))
    (training / 'calib' / f'{name}.txt').write_text(format_calib(SYNTHETIC_CALIB))
    (training / 'image_2' / f'{name}.png').write_bytes(blank_png())
    (training / 'planes' / f'{name}.txt').write_text(plane_text(lidar))
    return len(sweep['points'])


def write_image_sets(root: Path, num_sweeps: int, val_every: int) -> list:
    """root/ImageSets/{train,val}.txt of frame ids 000000, 000001, ...: every val_every-th frame (from the first)
    is val, the others train. Returns the ids."""
    (root / 'ImageSets').mkdir(parents=True, exist_ok=True)
    ids = [f'{i:06d}' for i in range(num_sweeps)]
    (root / 'ImageSets' / 'train.txt').write_text(''.join(f'{s}\n' for i, s in enumerate(ids) if i % val_every))
    (root / 'ImageSets' / 'val.txt').write_text(''.join(f'{s}\n' for i, s in enumerate(ids) if not i % val_every))
    return ids


def write_kitti_object(root, num_sweeps, seed, val_every=5, lidar=HDL64, *, workers=1, progress=False):
    """Write, per frame NNNNNN, root/training/velodyne/NNNNNN.bin (float32 x, y, z, intensity),
    semantic/NNNNNN.label (uint32 class id per point, same order), label_2/NNNNNN.txt (KITTI labels of the
    ray-cast cars, vans, trucks and pedestrians), calib/NNNNNN.txt, image_2/NNNNNN.png (blank) and
    planes/NNNNNN.txt, and root/ImageSets/{train,val,test}.txt: frames whose index is a multiple of
    val_every go to val, test is empty."""
    root = Path(root)
    for sub in KITTI_SUBDIRS:
        (root / 'training' / sub).mkdir(parents=True, exist_ok=True)
    write_image_sets(root, num_sweeps, val_every)
    (root / 'ImageSets' / 'test.txt').write_text('')

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
