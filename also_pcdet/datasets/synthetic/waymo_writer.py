"""Write synthetic Waymo data: OpenPCDet's processed `.npy` layout (+ its per-segment info `.pkl`) and raw
`Frame` tfrecords.

All five Waymo lidars are simulated at their mounting points (WAYMO_LIDAR_ORIGINS, vehicle frame = the scene's
world frame), each with its first and second returns: the 64-beam TOP lidar (75 m) and four short-range
lidars (20 m, beams uniform over [-90, 30] degrees like the real ones, a coarser grid than the real 200 x 600
to keep tests fast), which see only the half-space away from the car. A second return is the ground behind
an object whose edge the beam clipped. Frame `index` of segment `s` depends only on (seed, s, index), so both
layouts hold the same sweeps. Both writers return the ray-cast truth of every frame they write.
"""
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..readers import waymo_proto
from ..readers.tfrecord_io import write_tfrecord
from ..readers.waymo import WAYMO_LIDAR_NAMES, WAYMO_LIDAR_ORIGINS, WAYMO_TOP_LIDAR_ORIGIN
from .lidar import MISS, LidarModel, scan
from .scene import GROUND, make_scene

# 64 beams from +2.4 to -17.6 deg, denser near the horizon; 2650 columns; 75 m range.
WAYMO_TOP_LIDAR = LidarModel(
    inclinations_deg=tuple(np.round(np.concatenate([np.linspace(2.4, -4.0, 36),
                                                    np.linspace(-4.5, -17.6, 28)]), 4)),
    azimuth_step_deg=360.0 / 2650, max_range=75.0, min_range=1.0,
    mount_height=WAYMO_TOP_LIDAR_ORIGIN[2])
SHORT_RANGE_INCLINATION_DEG = (-90.0, 30.0)  # the short-range lidars' vertical field of view
SHORT_RANGE_ROWS, SHORT_RANGE_COLUMNS = 24, 150


def short_range_lidar(mount_height, rows=SHORT_RANGE_ROWS, columns=SHORT_RANGE_COLUMNS):
    """A short-range lidar whose beams are the uniform row centres of SHORT_RANGE_INCLINATION_DEG, as
    decoders rebuild them from a calibration's min/max."""
    low, high = SHORT_RANGE_INCLINATION_DEG
    return LidarModel(inclinations_deg=tuple(low + (np.arange(rows) + 0.5) / rows * (high - low)),
                      azimuth_step_deg=360.0 / columns, max_range=20.0, min_range=0.3, mount_height=mount_height)


@dataclass(frozen=True)
class MountedLidar:
    """One Waymo lidar: LaserName, model, extrinsic yaw (deg) and the half-angle (deg) around it that looks
    away from the car (columns outside it return nothing)."""
    name: int
    model: LidarModel
    yaw_deg: float
    half_fov_deg: float = 180.0

    @property
    def origin(self):
        return np.array(WAYMO_LIDAR_ORIGINS[WAYMO_LIDAR_NAMES[self.name - 1]], dtype=np.float64)


TOP_EXTRINSIC_YAW_DEG = 148.0  # about the real TOP lidar's yaw in the vehicle frame
_SHORT_RANGE_YAW_DEG = {'FRONT': 0.0, 'SIDE_LEFT': 90.0, 'SIDE_RIGHT': -90.0, 'REAR': 180.0}


def waymo_lidars(top=WAYMO_TOP_LIDAR) -> tuple:
    """The five MountedLidars in LaserName order (TOP, FRONT, SIDE_LEFT, SIDE_RIGHT, REAR)."""
    lidars = [MountedLidar(1, top, TOP_EXTRINSIC_YAW_DEG)]
    for name, yaw in _SHORT_RANGE_YAW_DEG.items():
        height = WAYMO_LIDAR_ORIGINS[name][2]
        lidars.append(MountedLidar(WAYMO_LIDAR_NAMES.index(name) + 1, short_range_lidar(height), yaw, 90.0))
    return tuple(lidars)


SWEEP_SECONDS = 0.1
NLZ_HALF_SIZE = 6.0  # half side (m) of the square no-label zone in each frame
SECOND_RETURN_SHARE = 0.15  # of the rays ending on an object, those whose beam also reaches the ground behind
SECOND_RETURN_GAP = 1.0  # m: a second return lies at least this far behind the first


def segment_name(segment):
    """Synthetic segment names follow Waymo's `segment-<id>_with_camera_labels`."""
    return f'segment-{segment:04d}_with_camera_labels'


def write_waymo_processed(root, num_segments, frames_per_segment, seed, top=WAYMO_TOP_LIDAR):
    """Write root/waymo_processed_data_v0_5_0/<segment>/NNNN.npy as OpenPCDet does: float32 (N, 6) x, y, z
    (vehicle frame), raw intensity, elongation, NLZ flag (1 inside, -1 outside), the points of lidar TOP,
    FRONT, SIDE_LEFT, SIDE_RIGHT, REAR in turn, each lidar's first returns then its second returns; the
    segment's info list root/waymo_processed_data_v0_5_0/<segment>/<segment>.pkl (one dict per frame with
    'point_cloud' {'num_features', 'lidar_sequence', 'sample_idx'}, 'frame_id', 'pose' and
    'num_points_of_each_lidar', both returns counted); and root/ImageSets/{train,val}.txt. Returns each
    frame's truth (see `make_waymo_frame`) with its 'path'."""
    root = Path(root)
    _write_image_sets(root, num_segments)
    truths = []
    for segment in range(num_segments):
        name = segment_name(segment)
        folder = root / 'waymo_processed_data_v0_5_0' / name
        folder.mkdir(parents=True, exist_ok=True)
        infos = []
        for index in range(frames_per_segment):
            frame = make_waymo_frame(seed, segment, index, top)
            path = folder / f'{index:04d}.npy'
            flag = np.where(frame['nlz'], 1.0, -1.0)
            np.save(path, np.column_stack([frame['xyz'], frame['intensity'], frame['elongation'], flag])
                    .astype(np.float32))
            infos.append({'point_cloud': {'num_features': 5, 'lidar_sequence': name, 'sample_idx': index},
                          'frame_id': f'{name}_{index:03d}', 'pose': frame['frame_pose'].astype(np.float32),
                          'num_points_of_each_lidar': [int(c) for c in frame['counts']]})
            truths.append(_truth(frame, path))
        with open(folder / f'{name}.pkl', 'wb') as f:
            pickle.dump(infos, f)
    return truths


def write_waymo_tfrecord(root, num_segments, frames_per_segment, seed, top=WAYMO_TOP_LIDAR):
    """Write root/<segment>.tfrecord holding Waymo `Frame` messages: every lidar's calibration (TOP with
    explicit beam inclinations and an extrinsic yawed by TOP_EXTRINSIC_YAW_DEG, the short-range lidars with
    min/max only) and both returns' range images (range, raw intensity, elongation, NLZ); odd segments give
    TOP a per-pixel pose. Also root/ImageSets/{train,val}.txt. Returns each frame's truth, with the record's
    byte `offset`."""
    root = Path(root)
    _write_image_sets(root, num_segments)
    truths = []
    for segment in range(num_segments):
        frames = [make_waymo_frame(seed, segment, index, top) for index in range(frames_per_segment)]
        path = root / f'{segment_name(segment)}.tfrecord'
        offsets = write_tfrecord(path, [_frame_message(segment, f) for f in frames])
        truths += [dict(_truth(f, path), offset=offset) for f, offset in zip(frames, offsets)]
    return truths


def make_waymo_frame(seed, segment, index, top=WAYMO_TOP_LIDAR):
    """One synthetic frame. Per point, in OpenPCDet's order (lidar by lidar, first returns then second
    returns, range-image row-major within each): 'xyz' float64 (N, 3) vehicle frame at the frame pose,
    'intensity' raw float32 (tanh of it is the ray-cast intensity), 'elongation' float32, 'nlz' bool,
    'lidar' (N,) row 0-4 (LaserName - 1), 'second' bool (second return). Per frame: 'counts' (5,) points
    of each lidar (both returns), 'origins' (5, 3) the lidars' positions, 'lidars' (MountedLidar, ...),
    'range_images' [[first, second] float32 (H, W, 4), -1 where no return] per lidar, 'pixel_pose' (TOP's,
    float32 (H, W, 6) or None), 'frame_pose', 'segment', 'index'."""
    rng = np.random.default_rng([seed, segment, index])
    scene = make_scene(rng)
    lidars = waymo_lidars(top)
    parts = [_lidar_returns(scene, lidar, rng) for lidar in lidars]
    xyz = np.concatenate([p['xyz'] for p in parts])
    zone = parts[0]['xyz'][rng.integers(len(parts[0]['xyz'])), :2]  # centred on a return: always flags some
    euler = np.array([rng.normal(0.0, 0.01), rng.normal(0.0, 0.01), rng.uniform(-np.pi, np.pi)])
    position = np.array([rng.uniform(-500.0, 500.0), rng.uniform(-500.0, 500.0), rng.uniform(-20.0, 20.0)])
    frame_pose = _pose_matrix(*euler, position)
    pixel_pose = None
    if segment % 2:  # TOP's rolling shutter: each column fires at its own vehicle pose
        width = parts[0]['range_images'][0].shape[1]
        column_pose = _rolling_pose(rng, euler, position, width)
        pixel_pose = np.broadcast_to(column_pose, (top.num_beams, width, 6))
        top_count = len(parts[0]['xyz'])
        xyz[:top_count] = _to_frame_pose(xyz[:top_count], column_pose, parts[0]['col'], frame_pose)
    nlz = np.all(np.abs(xyz[:, :2] - zone) < NLZ_HALF_SIZE, axis=1)
    elongation = rng.uniform(0.0, 0.4, len(xyz)).astype(np.float32)
    start = 0
    for image, rows, cols in (pixels for part in parts for pixels in part['pixels']):
        points = slice(start, start + len(rows))  # the frame's points come in this same order
        image[rows, cols, 2] = elongation[points]
        image[rows, cols, 3] = np.where(nlz[points], 1.0, -1.0)
        start += len(rows)
    return {
        'xyz': xyz, 'intensity': np.concatenate([p['intensity'] for p in parts]), 'elongation': elongation,
        'nlz': nlz, 'lidar': np.repeat(np.arange(len(parts)), [len(p['xyz']) for p in parts]),
        'second': np.concatenate([p['second'] for p in parts]),
        'counts': np.array([len(p['xyz']) for p in parts]), 'origins': np.stack([l.origin for l in lidars]),
        'lidars': lidars, 'range_images': [p['range_images'] for p in parts], 'pixel_pose': pixel_pose,
        'frame_pose': frame_pose, 'segment': segment_name(segment), 'index': index,
    }


def _lidar_returns(scene, lidar, rng):
    """One lidar's first and second returns, in range-image row-major order, first returns first: 'xyz'
    (vehicle frame, before any pixel pose), raw 'intensity', 'second', 'col', both 'range_images' (range and
    intensity filled) and 'pixels': (image, rows, cols) of each return's points."""
    model, origin = lidar.model, lidar.origin
    sweep = scan(scene, model, (origin[0], origin[1], 0.0), rng=rng)
    first = sweep['range_image'].copy()
    azimuth_off = np.angle(np.exp(1j * (model.azimuths - np.radians(lidar.yaw_deg))))
    first[:, np.abs(azimuth_off) > np.radians(lidar.half_fov_deg)] = 0.0  # looking into the car
    dirs = model.directions()
    with np.errstate(divide='ignore', invalid='ignore'):
        ground_t = (scene.ground.z - origin[2]) / dirs[..., 2]
    clipped = (first > 0) & (sweep['label_image'] != GROUND) & (sweep['label_image'] != MISS)
    second = np.where(clipped & (rng.random(first.shape) < SECOND_RETURN_SHARE) & (dirs[..., 2] < 0)
                      & (ground_t > first + SECOND_RETURN_GAP) & (ground_t <= model.max_range), ground_t, 0.0)
    strengths = (sweep['intensity_image'], rng.uniform(0.02, 0.2, first.shape))
    images, xyz, intensity, cols, flags, pixels = [], [], [], [], [], []
    for ranges, strength, is_second in ((first, strengths[0], False), (second, strengths[1], True)):
        rows, col = np.nonzero(ranges > 0)  # row-major
        image = np.full(ranges.shape + (4,), -1.0, dtype=np.float32)
        raw = np.arctanh(np.clip(strength[rows, col], 0.0, 0.995)).astype(np.float32)
        image[rows, col, 0], image[rows, col, 1] = ranges[rows, col], raw
        images.append(image)
        xyz.append(origin + dirs[rows, col] * ranges[rows, col, None].astype(np.float64))
        intensity.append(raw)
        cols.append(col)
        flags.append(np.full(len(rows), is_second))
        pixels.append((image, rows, col))

    return {'xyz': np.concatenate(xyz), 'intensity': np.concatenate(intensity), 'second': np.concatenate(flags),
            'col': np.concatenate(cols), 'range_images': images, 'pixels': pixels}


def _rolling_pose(rng, euler, position, width):
    """Vehicle pose (roll, pitch, yaw, x, y, z) of each column, float32 (W, 6): the car drives
    and turns during the sweep and each column fires at its own time around the frame time."""
    t = ((np.arange(width) + 0.5) / width - 0.5) * SWEEP_SECONDS
    speed, yaw_rate, wobble = rng.uniform(5.0, 15.0), rng.uniform(-0.5, 0.5), rng.uniform(0.005, 0.02)
    heading = euler[2] + yaw_rate * t
    columns = np.column_stack([
        euler[0] + wobble * np.sin(40.0 * t), euler[1] + wobble * np.cos(40.0 * t) - wobble, heading,
        position[0] + speed * t * np.cos(heading), position[1] + speed * t * np.sin(heading),
        np.full(width, position[2]),
    ])
    return columns.astype(np.float32)


def _to_frame_pose(xyz, column_pose, col, frame_pose):
    """Points seen from their column's vehicle pose, expressed in the vehicle frame at frame_pose."""
    world_to_frame = np.linalg.inv(frame_pose)
    relative = np.stack([world_to_frame @ _pose_matrix(*p[:3], p[3:])
                         for p in column_pose.astype(np.float64)])
    return np.einsum('nij,nj->ni', relative[col, :3, :3], xyz) + relative[col, :3, 3]


def _pose_matrix(roll, pitch, yaw, translation):
    """4x4 transform with rotation Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    def axis_rotation(angle, i, j):
        r = np.eye(3)
        r[i, i] = r[j, j] = np.cos(angle)
        r[i, j], r[j, i] = -np.sin(angle), np.sin(angle)
        return r
    m = np.eye(4)
    m[:3, :3] = axis_rotation(yaw, 0, 1) @ axis_rotation(pitch, 2, 0) @ axis_rotation(roll, 1, 2)
    m[:3, 3] = translation
    return m


def _compressed_matrix(array):
    matrix = waymo_proto.MatrixFloat()
    matrix.data.extend(array.ravel().tolist())
    matrix.shape.dims.extend(array.shape)
    return zlib.compress(matrix.SerializeToString(), 1)


def _frame_message(segment, frame):
    """A serialized Waymo `Frame`: calibrations listed REAR first (readers must select lidars by name),
    the frame pose, and each lidar's two range images (TOP's first return carries the pixel pose)."""
    message = waymo_proto.Frame(timestamp_micros=1_550_000_000_000_000 + 100_000 * frame['index'])
    message.context.name = f'{segment:04d}'
    for lidar in reversed(frame['lidars']):
        calibration = message.context.laser_calibrations.add(name=lidar.name)
        ascending = lidar.model.inclinations[::-1]  # stored lowest beam first
        if lidar.name == waymo_proto.LASER_TOP:
            calibration.beam_inclinations.extend(ascending.tolist())
        # outer edges of the extreme rows, so uniform beams are reproduced from min/max alone
        calibration.beam_inclination_min = ascending[0] - (ascending[1] - ascending[0]) / 2
        calibration.beam_inclination_max = ascending[-1] + (ascending[-1] - ascending[-2]) / 2
        extrinsic = _pose_matrix(0.0, 0.0, np.radians(lidar.yaw_deg), lidar.origin)
        calibration.extrinsic.transform.extend(extrinsic.ravel().tolist())
    message.pose.transform.extend(frame['frame_pose'].ravel().tolist())
    for lidar, (first, second) in zip(frame['lidars'], frame['range_images']):
        laser = message.lasers.add(name=lidar.name)
        laser.ri_return1.range_image_compressed = _compressed_matrix(first)
        laser.ri_return2.range_image_compressed = _compressed_matrix(second)
        if lidar.name == waymo_proto.LASER_TOP and frame['pixel_pose'] is not None:
            laser.ri_return1.range_image_pose_compressed = _compressed_matrix(frame['pixel_pose'])
    return message.SerializeToString()


def _truth(frame, path):
    keys = ('xyz', 'intensity', 'elongation', 'nlz', 'lidar', 'second', 'counts', 'origins', 'segment', 'index')
    return dict({k: frame[k] for k in keys}, path=path, has_pixel_pose=frame['pixel_pose'] is not None)


def _write_image_sets(root, num_segments):
    """ImageSets list `<segment>.tfrecord` names as OpenPCDet's do; the last fifth (at least
    one segment) goes to val."""
    names = [f'{segment_name(s)}.tfrecord\n' for s in range(num_segments)]
    num_val = max(1, num_segments // 5)
    (root / 'ImageSets').mkdir(parents=True, exist_ok=True)
    (root / 'ImageSets' / 'train.txt').write_text(''.join(names[:-num_val]))
    (root / 'ImageSets' / 'val.txt').write_text(''.join(names[-num_val:]))
