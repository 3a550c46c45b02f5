"""Write synthetic sweeps in the real on-disk layouts of KITTI raw, KITTI-360, SemanticKITTI-style sequences,
nuScenes, ONCE, Lyft and OpenPCDet's custom dataset, and the Waymo layouts sized by a number of sweeps. Frame i
is `make_sweep(seed, i, lidar)`."""
import hashlib
import json
import math
import os
import pickle
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..official_splits import shipped_list
from .kitti_writer import make_sweep, write_image_sets
from .lidar import HDL64, LidarModel, scan
from .scene import make_scene
from .waymo_writer import write_waymo_processed, write_waymo_tfrecord

# nuScenes LIDAR_TOP is a Velodyne HDL-32E: 32 beams from +10.67 to -30.67 deg, 20 Hz (0.33 deg steps).
HDL32 = LidarModel(inclinations_deg=tuple(np.round(np.linspace(10.67, -30.67, 32), 4)), azimuth_step_deg=0.33,
                   max_range=70.0, min_range=1.0, mount_height=1.84)
# ONCE's roof lidar is a Hesai Pandar40: 40 beams from +7 to -16 deg, 10 Hz (0.2 deg steps).
PANDAR40 = LidarModel(inclinations_deg=tuple(np.round(np.linspace(7.0, -16.0, 40), 4)), azimuth_step_deg=0.2,
                      max_range=120.0, min_range=1.0, mount_height=1.9)
KITTI_RAW_DATES = ('2011_09_26', '2011_09_28', '2011_09_29', '2011_09_30', '2011_10_03')
NUSCENES_SWEEP_US = 50_000  # 20 Hz
NUSCENES_VERSION = 'v1.0-trainval'  # the folder of the JSON tables under the dataset root
NUSCENES_KEYFRAME_EVERY = 10  # key frames (samples/) at 2 Hz, the others in sweeps/


def kitti_record(sweep) -> np.ndarray:
    """KITTI velodyne record: float32 x, y, z, reflectance in [0, 1]."""
    return sweep['points']


def nuscenes_record(sweep) -> np.ndarray:
    """nuScenes `.pcd.bin` record: float32 x, y, z, intensity 0-255 (whole numbers), ring index."""
    points = sweep['points']
    return np.column_stack([points[:, :3], np.round(points[:, 3] * 255.0), sweep['ring']]).astype(np.float32)


def lyft_record(sweep) -> np.ndarray:
    """Lyft `.bin` record: float32 x, y, z, intensity (the constant 100 of the released files), channel."""
    points = sweep['points']
    return np.column_stack([points[:, :3], np.full(len(points), 100.0), sweep['ring']]).astype(np.float32)


def _write_frame(job):
    path, seed, index, lidar, encode = job
    encode(make_sweep(seed, index, lidar)).tofile(path)


def run_jobs(function, jobs, paths, workers=1, progress=False):
    """Create the folders of `paths`, then run `function(job)` for every job over `workers` processes."""
    for folder in {Path(path).parent for path in paths}:
        folder.mkdir(parents=True, exist_ok=True)
    with tqdm(total=len(jobs), desc='sweeps', unit='sweep', disable=not progress) as bar:
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                for _ in pool.map(function, jobs):
                    bar.update()
        else:
            for job in jobs:
                function(job)
                bar.update()


def write_frames(paths, seed, lidar, encode, workers=1, progress=False):
    """Write frame i (= make_sweep(seed, i, lidar), encoded) to paths[i], over `workers` processes."""
    jobs = [(path, seed, index, lidar, encode) for index, path in enumerate(paths)]
    run_jobs(_write_frame, jobs, paths, workers, progress)


def kitti_raw_drive(drive: int) -> Path:
    """`<date>/<date>_drive_<NNNN>_sync` of synthetic drive `drive` (dates cycle over KITTI raw's five); every
    fourth drive (3, 7, ...) is named after one of KITTI's official val drives, the others are train drives."""
    if drive % 4 == 3:
        val = shipped_list('kitti_raw_val')
        name = val[drive // 4 % len(val)]
        return Path(name[:10], name)
    date = KITTI_RAW_DATES[drive % len(KITTI_RAW_DATES)]
    return Path(date, f'{date}_drive_{drive + 1:04d}_sync')


def write_timestamps(folders: list, start: datetime) -> dict:
    """<folder>/timestamps.txt (KITTI's `%Y-%m-%d %H:%M:%S.<ns>` lines at 10 Hz from `start`) for each distinct
    folder of `folders` (one entry per frame, in frame order). Returns {folder: frames}, sorted by folder."""
    counts = {folder: sum(1 for f in folders if f == folder) for folder in sorted(set(folders))}
    for folder, count in counts.items():
        (folder / 'timestamps.txt').write_text(''.join(
            f'{start + timedelta(seconds=0.1 * k):%Y-%m-%d %H:%M:%S.%f}000\n' for k in range(count)))
    return counts


def write_kitti_raw(root, num_sweeps, seed, *, frames_per_drive=4, workers=1, progress=False) -> list:
    """KITTI raw: root/<date>/<date>_drive_<NNNN>_sync/velodyne_points/data/<NNNNNNNNNN>.bin (HDL-64,
    float32 x, y, z, reflectance) and velodyne_points/timestamps.txt, `frames_per_drive` frames per drive.
    Returns the sweep paths in frame order."""
    root = Path(root)
    drives = [root / kitti_raw_drive(i // frames_per_drive) / 'velodyne_points' for i in range(num_sweeps)]
    paths = [drive / 'data' / f'{i % frames_per_drive:010d}.bin' for i, drive in enumerate(drives)]
    write_frames(paths, seed, HDL64, kitti_record, workers, progress)
    write_timestamps(drives, datetime(2011, 9, 26, 13, 2, 25))
    return paths


KITTI360_DRIVES = (0, 2, 3, 4, 5, 6, 7, 9, 10)  # 2013_05_28_drive_<NNNN>_sync numbers KITTI-360 publishes


def kitti360_drive(drive: int) -> str:
    return f'2013_05_28_drive_{KITTI360_DRIVES[drive % len(KITTI360_DRIVES)]:04d}_sync'


def kitti360_windows(frames: int) -> tuple:
    """(train, val) windows (first, last) of a drive's frames: the last two frames are val, the others two
    train windows sharing one frame (KITTI-360's windows overlap); a drive of under 4 frames is all train."""
    if frames < 4:
        return [(0, frames - 1)], []
    middle = (frames - 3) // 2
    return [(0, middle), (middle, frames - 3)], [(frames - 2, frames - 1)]


def write_kitti360(root, num_sweeps, seed, *, frames_per_drive=6, workers=1, progress=False) -> list:
    """KITTI-360: root/data_3d_raw/2013_05_28_drive_<NNNN>_sync/velodyne_points/data/<NNNNNNNNNN>.bin (HDL-64,
    float32 x, y, z, reflectance) with velodyne_points/timestamps.txt, `frames_per_drive` frames per drive,
    and the window lists root/data_3d_semantics/train/2013_05_28_drive_{train,val}.txt
    (`data_3d_semantics/train/<drive>/static/<first>_<last>.ply` per line). Returns the sweep paths."""
    root = Path(root)
    folders = [root / 'data_3d_raw' / kitti360_drive(i // frames_per_drive) / 'velodyne_points'
               for i in range(num_sweeps)]
    paths = [folder / 'data' / f'{i % frames_per_drive:010d}.bin' for i, folder in enumerate(folders)]
    write_frames(paths, seed, HDL64, kitti_record, workers, progress)
    lists = {'train': [], 'val': []}
    counts = write_timestamps(folders, datetime(2013, 5, 28, 8, 46, 2))
    for folder, count in counts.items():
        for split, windows in zip(('train', 'val'), kitti360_windows(count)):
            lists[split] += [f'data_3d_semantics/train/{folder.parent.name}/static/{a:010d}_{b:010d}.ply'
                             for a, b in windows]
    (root / 'data_3d_semantics' / 'train').mkdir(parents=True, exist_ok=True)
    for split, lines in lists.items():
        (root / 'data_3d_semantics' / 'train' / f'2013_05_28_drive_{split}.txt').write_text(
            ''.join(f'{line}\n' for line in lines))
    return paths


def write_sequences(root, num_sweeps, seed, *, frames_per_sequence=4, workers=1, progress=False) -> list:
    """SemanticKITTI-style: root/sequences/<NN>/velodyne/<NNNNNN>.bin (HDL-64, float32 x, y, z, reflectance)
    and sequences/<NN>/times.txt, `frames_per_sequence` frames per sequence. Returns the sweep paths."""
    root = Path(root)
    folders = [root / 'sequences' / f'{i // frames_per_sequence:02d}' for i in range(num_sweeps)]
    paths = [folder / 'velodyne' / f'{i % frames_per_sequence:06d}.bin' for i, folder in enumerate(folders)]
    write_frames(paths, seed, HDL64, kitti_record, workers, progress)
    for folder in sorted(set(folders)):
        count = sum(1 for f in folders if f == folder)
        (folder / 'times.txt').write_text(''.join(f'{0.1 * k:e}\n' for k in range(count)))
    return paths


def nuscenes_name(scene: int, frame: int) -> str:
    """`<log>__LIDAR_TOP__<microseconds>.pcd.bin`, the name nuScenes gives a LIDAR_TOP sweep."""
    log = f'n015-2018-07-{scene % 28 + 1:02d}-11-22-45+0800'
    return f'{log}__LIDAR_TOP__{1532402927647951 + scene * 3_600_000_000 + frame * NUSCENES_SWEEP_US}.pcd.bin'


def write_nuscenes(root, num_sweeps, seed, *, frames_per_scene=20, workers=1, progress=False) -> list:
    """nuScenes LIDAR_TOP (HDL-32E, sensor frame): every 10th frame of a scene is a key frame in
    root/samples/LIDAR_TOP/, the others go to root/sweeps/LIDAR_TOP/; records are float32 x, y, z,
    intensity 0-255, ring. Returns the sweep paths in frame order."""
    root = Path(root)
    paths = []
    for i in range(num_sweeps):
        scene, frame = divmod(i, frames_per_scene)
        kind = 'samples' if frame % NUSCENES_KEYFRAME_EVERY == 0 else 'sweeps'
        paths.append(root / kind / 'LIDAR_TOP' / nuscenes_name(scene, frame))
    write_frames(paths, seed, HDL32, nuscenes_record, workers, progress)
    write_nuscenes_tables(root / NUSCENES_VERSION, paths, [i // frames_per_scene for i in range(num_sweeps)])
    return paths


def nuscenes_scene_name(scene: int) -> str:
    """Synthetic scene `scene` takes an official scene name: even scenes train ones, odd scenes val ones."""
    names = shipped_list('nuscenes_val' if scene % 2 else 'nuscenes_train')
    return names[scene // 2 % len(names)]


def _token(*parts) -> str:
    return hashlib.md5('/'.join(map(str, parts)).encode()).hexdigest()


def write_nuscenes_tables(tables, paths, scenes):
    """The nuScenes tables a split needs, as plain JSON in `tables` (e.g. root/v1.0-trainval/), for the sweep
    files `paths` of synthetic scenes `scenes` (one per path): log.json (`logfile` = the file names' prefix),
    scene.json (named by `nuscenes_scene_name`) and sample.json (one sample per key frame in samples/, its
    timestamp the file name's, linked prev/next within its scene)."""
    logs, stamps = {}, defaultdict(list)
    for path, scene in zip(paths, scenes):
        log, _, stamp = Path(path).name.partition('__LIDAR_TOP__')
        logs.setdefault(scene, log)
        if Path(path).parent.parent.name == 'samples':
            stamps[scene].append(int(stamp.split('.')[0]))
    log_rows = [{'token': _token('log', log), 'logfile': log, 'vehicle': 'n015', 'date_captured': log[5:15],
                 'location': 'singapore-onenorth'} for log in sorted(set(logs.values()))]
    scene_rows, sample_rows = [], []
    for scene, log in logs.items():
        times = sorted(stamps[scene])
        tokens = [_token('sample', scene, time) for time in times]
        scene_rows.append({'token': _token('scene', scene), 'log_token': _token('log', log), 'nbr_samples': len(times),
                           'first_sample_token': tokens[0] if tokens else '',
                           'last_sample_token': tokens[-1] if tokens else '', 'name': nuscenes_scene_name(scene),
                           'description': 'synthetic ray-cast street scene'})
        sample_rows += [{'token': token, 'timestamp': time, 'prev': tokens[k - 1] if k else '',
                         'next': tokens[k + 1] if k + 1 < len(tokens) else '', 'scene_token': _token('scene', scene)}
                        for k, (token, time) in enumerate(zip(tokens, times))]
    Path(tables).mkdir(parents=True, exist_ok=True)
    for name, rows in (('log', log_rows), ('scene', scene_rows), ('sample', sample_rows)):
        (Path(tables) / f'{name}.json').write_text(json.dumps(rows, indent=1))


NUSCENES_EGO_SPEED = 2.0  # m/s along +x in the multi-sweep scenes: 0.1 m between 20 Hz sweeps


def nuscenes_drive_position(frame: int, frames_per_scene: int) -> np.ndarray:
    """Where the ego vehicle is at `frame` of a scene: on +x at NUSCENES_EGO_SPEED, at (0, 0) on the last frame."""
    return np.array([NUSCENES_EGO_SPEED * NUSCENES_SWEEP_US * 1e-6 * (frame - frames_per_scene + 1), 0.0, 0.0])


def _write_drive_frame(job):
    path, seed, scene, frame, frames_per_scene = job
    world = make_scene(np.random.default_rng([seed, scene]))  # one static scene per nuScenes scene
    sweep = scan(world, HDL32, sensor_position=nuscenes_drive_position(frame, frames_per_scene),
                 rng=np.random.default_rng([seed, scene, frame]))
    nuscenes_record(sweep).tofile(path)


def nuscenes_info(root: Path, paths: list, scene: int, key: int, frames_per_scene: int, max_sweeps: int) -> dict:
    """OpenPCDet's info entry of key frame `key`: its `sweeps` are the max_sweeps - 1 frames before it, newest
    first, each with `transform_matrix` (its lidar frame -> the key frame's) and `time_lag` (s); missing ones
    repeat the last (the key frame itself, transform None, when there is none), as create_nuscenes_infos does."""
    def frame_path(frame):
        return str(paths[scene * frames_per_scene + frame].relative_to(root))

    sweeps = []
    for frame in range(key - 1, max(key - max_sweeps, -1), -1):
        transform = np.eye(4)
        transform[:3, 3] = (nuscenes_drive_position(frame, frames_per_scene)
                            - nuscenes_drive_position(key, frames_per_scene))
        sweeps.append({'lidar_path': frame_path(frame), 'transform_matrix': transform,
                       'time_lag': (key - frame) * NUSCENES_SWEEP_US * 1e-6,
                       'sample_data_token': f'{scene:04d}{frame:04d}'})
    if not sweeps:
        sweeps.append({'lidar_path': frame_path(key), 'transform_matrix': None, 'time_lag': 0.0,
                       'sample_data_token': f'{scene:04d}{key:04d}'})
    sweeps += [sweeps[-1]] * (max_sweeps - 1 - len(sweeps))
    return {'lidar_path': frame_path(key), 'token': f'{scene:04d}{key:04d}', 'sweeps': sweeps,
            'timestamp': 1532402927647951 + scene * 3_600_000_000 + key * NUSCENES_SWEEP_US}


def write_nuscenes_infos(root, num_sweeps, seed, *, frames_per_scene=20, max_sweeps=10, workers=1,
                         progress=False) -> list:
    """nuScenes LIDAR_TOP as `write_nuscenes`, but each scene one static world the ego drives through
    (`nuscenes_drive_position`), plus OpenPCDet's info pkls root/nuscenes_infos_<max_sweeps>sweeps_{train,val}.pkl
    (`nuscenes_info` per key frame; the last scene is val, the others train; one scene is both). Returns the
    sweep paths in frame order."""
    root = Path(root)
    jobs, paths = [], []
    for i in range(num_sweeps):
        scene, frame = divmod(i, frames_per_scene)
        kind = 'samples' if frame % NUSCENES_KEYFRAME_EVERY == 0 else 'sweeps'
        paths.append(root / kind / 'LIDAR_TOP' / nuscenes_name(scene, frame))
        jobs.append((paths[-1], seed, scene, frame, frames_per_scene))
    run_jobs(_write_drive_frame, jobs, paths, workers, progress)
    scenes = math.ceil(num_sweeps / frames_per_scene)
    infos = [[nuscenes_info(root, paths, scene, key, frames_per_scene, max_sweeps)
              for key in range(0, min(frames_per_scene, num_sweeps - scene * frames_per_scene),
                               NUSCENES_KEYFRAME_EVERY)]
             for scene in range(scenes)]
    for split, listed in (('train', infos[:-1] or infos), ('val', infos[-1:])):
        with open(root / f'nuscenes_infos_{max_sweeps}sweeps_{split}.pkl', 'wb') as handle:
            pickle.dump([info for scene in listed for info in scene], handle)
    return paths


ONCE_FIRST_FRAME_MS = 1616343527200
ONCE_SPLITS = ('train', 'val', 'test', 'raw_small', 'raw_medium', 'raw_large')


def once_record(sweep) -> np.ndarray:
    """ONCE `lidar_roof` record: float32 x, y, z, intensity 0-255."""
    points = sweep['points']
    return np.column_stack([points[:, :3], np.round(points[:, 3] * 255.0)]).astype(np.float32)


def once_split_lists(sequences: list) -> dict:
    """Sequence ids per ONCE split: the first three sequences are train, val and test, the others unlabelled
    raw data, with raw_small within raw_medium within raw_large (ONCE's nesting)."""
    raw = sequences[3:]
    return {'train': sequences[:1], 'val': sequences[1:2], 'test': sequences[2:3],
            'raw_small': raw[:max(1, len(raw) // 2)], 'raw_medium': raw[:max(1, 3 * len(raw) // 4)],
            'raw_large': raw}


def write_once(root, num_sweeps, seed, *, frames_per_sequence=4, workers=1, progress=False) -> list:
    """ONCE: root/data/<NNNNNN>/lidar_roof/<timestamp ms>.bin (Pandar40, float32 x, y, z, intensity 0-255),
    root/data/<NNNNNN>/<NNNNNN>.json (the frame list, with identity poses) and
    root/ImageSets/{train,val,test,raw_small,raw_medium,raw_large}.txt listing sequence ids
    (`once_split_lists`). Returns the sweep paths in frame order."""
    root = Path(root)
    sequence_ids = [f'{76 + 4 * (i // frames_per_sequence):06d}' for i in range(num_sweeps)]
    frame_ids = [str(ONCE_FIRST_FRAME_MS + 3_600_000 * (i // frames_per_sequence) + 100 * (i % frames_per_sequence))
                 for i in range(num_sweeps)]
    paths = [root / 'data' / seq / 'lidar_roof' / f'{frame}.bin' for seq, frame in zip(sequence_ids, frame_ids)]
    write_frames(paths, seed, PANDAR40, once_record, workers, progress)
    sequences = sorted(set(sequence_ids))
    for seq in sequences:
        frames = [{'frame_id': frame, 'pose': [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]}
                  for s, frame in zip(sequence_ids, frame_ids) if s == seq]
        (root / 'data' / seq / f'{seq}.json').write_text(json.dumps(
            {'meta_info': {'sequence_id': seq, 'synthetic': True}, 'calib': {}, 'frames': frames}))
    (root / 'ImageSets').mkdir(parents=True, exist_ok=True)
    for split, listed in once_split_lists(sequences).items():
        (root / 'ImageSets' / f'{split}.txt').write_text(''.join(f'{seq}\n' for seq in listed))
    return paths


def _segments(num_sweeps, max_frames_per_segment):
    """(segments, frames per segment) covering `num_sweeps` frames: at least two segments, since the Waymo
    writers send the last fifth of them (at least one) to val."""
    segments = max(2, math.ceil(num_sweeps / max_frames_per_segment))
    return segments, math.ceil(num_sweeps / segments)


def write_waymo_processed_sweeps(root, num_sweeps, seed, *, max_frames_per_segment=20) -> list:
    """OpenPCDet's processed Waymo layout (`write_waymo_processed`) with at least `num_sweeps` frames (exactly
    when they split evenly over the segments). Returns the writer's per-frame truth."""
    return write_waymo_processed(root, *_segments(num_sweeps, max_frames_per_segment), seed)


def write_waymo_tfrecord_sweeps(root, num_sweeps, seed, *, max_frames_per_segment=20, raw_data_tag='raw_data') -> list:
    """OpenPCDet's raw Waymo layout: root/raw_data/<segment>.tfrecord and root/ImageSets/{train,val}.txt
    (`write_waymo_tfrecord`), sized like `write_waymo_processed_sweeps`. Returns the per-frame truth."""
    root, raw = Path(root), Path(root) / raw_data_tag
    truths = write_waymo_tfrecord(raw, *_segments(num_sweeps, max_frames_per_segment), seed)
    (root / 'ImageSets').mkdir(parents=True, exist_ok=True)
    for listing in (raw / 'ImageSets').iterdir():
        os.replace(listing, root / 'ImageSets' / listing.name)
    (raw / 'ImageSets').rmdir()
    return truths


def write_lyft(root, num_sweeps, seed, *, version='trainval', workers=1, progress=False) -> list:
    """Lyft Level 5: root/<version>/lidar/host-a<NNN>_lidar1_<ns>.bin (HDL-64, lidar frame), float32 x, y, z,
    intensity 100, channel. Returns the sweep paths in frame order."""
    folder = Path(root) / version / 'lidar'
    paths = [folder / f'host-a{i // 10:03d}_lidar1_{1232815252301696606 + i * 100_000_000}.bin' for i in range(num_sweeps)]
    write_frames(paths, seed, HDL64, lyft_record, workers, progress)
    return paths


def write_custom(root, num_sweeps, seed, *, val_every=5, workers=1, progress=False) -> list:
    """OpenPCDet's custom dataset: root/points/<NNNNNN>.npy (HDL-64, float32 (N, 4) x, y, z, intensity) and
    root/ImageSets/{train,val}.txt; frames whose index is a multiple of val_every go to val."""
    root = Path(root)
    (root / 'points').mkdir(parents=True, exist_ok=True)
    ids = write_image_sets(root, num_sweeps, val_every)
    paths = [root / 'points' / f'{name}.npy' for name in ids]
    for index, path in enumerate(tqdm(paths, desc='sweeps', unit='sweep', disable=not progress)):
        np.save(path, make_sweep(seed, index, HDL64)['points'].astype(np.float32))
    return paths
