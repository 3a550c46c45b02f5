"""Write synthetic Waymo data: OpenPCDet's processed `.npy` layout and raw `Frame` tfrecords.

A Waymo-like TOP lidar sits at WAYMO_TOP_LIDAR_ORIGIN in the vehicle frame (= the scene's
world frame). Frame `index` of segment `s` depends only on (seed, s, index), so both layouts
hold the same sweeps. Both writers return the ray-cast truth of every frame they write.
"""
import zlib
from pathlib import Path

import numpy as np

from ..readers import waymo_proto
from ..readers.tfrecord_io import write_tfrecord
from ..readers.waymo import WAYMO_TOP_LIDAR_ORIGIN
from .lidar import LidarModel, scan
from .scene import make_scene

# 64 beams from +2.4 to -17.6 deg, denser near the horizon; 2650 columns; 75 m range.
WAYMO_TOP_LIDAR = LidarModel(
    inclinations_deg=tuple(np.round(np.concatenate([np.linspace(2.4, -4.0, 36),
                                                    np.linspace(-4.5, -17.6, 28)]), 4)),
    azimuth_step_deg=360.0 / 2650, max_range=75.0, min_range=1.0,
    mount_height=WAYMO_TOP_LIDAR_ORIGIN[2])
TOP_EXTRINSIC_YAW_DEG = 148.0  # about the real TOP lidar's yaw in the vehicle frame
SWEEP_SECONDS = 0.1
NLZ_HALF_SIZE = 6.0  # half side (m) of the square no-label zone in each frame
_LASER_FRONT = 2


def segment_name(segment):
    """Synthetic segment names follow Waymo's `segment-<id>_with_camera_labels`."""
    return f'segment-{segment:04d}_with_camera_labels'


def write_waymo_processed(root, num_segments, frames_per_segment, seed, lidar=WAYMO_TOP_LIDAR):
    """Write root/waymo_processed_data_v0_5_0/<segment>/NNNN.npy, float32 (N, 6): x, y, z
    (vehicle frame), raw intensity, elongation, NLZ flag (1 inside, -1 outside), plus
    root/ImageSets/{train,val}.txt. Returns each frame's truth: 'xyz', 'intensity',
    'elongation', 'nlz', 'origin' as in `make_waymo_frame`, 'segment', 'index', 'path',
    'has_pixel_pose'."""
    root = Path(root)
    _write_image_sets(root, num_segments)
    truths = []
    for segment in range(num_segments):
        folder = root / 'waymo_processed_data_v0_5_0' / segment_name(segment)
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(frames_per_segment):
            frame = make_waymo_frame(seed, segment, index, lidar)
            path = folder / f'{index:04d}.npy'
            flag = np.where(frame['nlz'], 1.0, -1.0)
            np.save(path, np.column_stack([frame['xyz'], frame['intensity'], frame['elongation'], flag])
                    .astype(np.float32))
            truths.append(_truth(frame, path))
    return truths


def write_waymo_tfrecord(root, num_segments, frames_per_segment, seed, lidar=WAYMO_TOP_LIDAR):
    """Write root/<segment>.tfrecord holding Waymo `Frame` messages (TOP lidar first-return
    range image with channels range, raw intensity, elongation, NLZ; explicit beam
    inclinations; extrinsic yawed by TOP_EXTRINSIC_YAW_DEG; odd segments also carry a
    per-pixel pose) plus root/ImageSets/{train,val}.txt. Returns each frame's truth, with
    the record's byte `offset`."""
    root = Path(root)
    _write_image_sets(root, num_segments)
    truths = []
    for segment in range(num_segments):
        frames = [make_waymo_frame(seed, segment, index, lidar) for index in range(frames_per_segment)]
        path = root / f'{segment_name(segment)}.tfrecord'
        offsets = write_tfrecord(path, [_frame_message(segment, f) for f in frames])
        truths += [dict(_truth(f, path), offset=offset) for f, offset in zip(frames, offsets)]
    return truths


def make_waymo_frame(seed, segment, index, lidar=WAYMO_TOP_LIDAR):
    """One synthetic frame. Returns a dict with, per return in row-major range-image order:
    'xyz' float64 (N, 3) vehicle frame at the frame pose, 'intensity' raw float32 (tanh of it
    is the ray-cast intensity), 'elongation' float32, 'nlz' bool; and 'range_image' float32
    (H, W, 4) (-1 where no return), 'pixel_pose' float32 (H, W, 6) or None, 'frame_pose' and
    'extrinsic' (4, 4), 'origin' (the sensor: WAYMO_TOP_LIDAR_ORIGIN at the lidar's mount
    height), 'lidar', 'segment', 'index'."""
    rng = np.random.default_rng([seed, segment, index])
    origin = np.array([*WAYMO_TOP_LIDAR_ORIGIN[:2], lidar.mount_height])
    sweep = scan(make_scene(rng), lidar, (origin[0], origin[1], 0.0), rng=rng)
    col, row = np.nonzero(sweep['range_image'].T > 0)  # the order of sweep['points']
    order = np.lexsort((col, row))
    row, col = row[order], col[order]
    xyz = sweep['points'][order, :3].astype(np.float64) + origin
    intensity = np.arctanh(np.clip(sweep['points'][order, 3], 0.0, 0.995)).astype(np.float32)
    elongation = rng.uniform(0.0, 0.4, len(row)).astype(np.float32)
    zone = xyz[rng.integers(len(xyz)), :2]  # centred on a return, so it always flags some
    nlz = np.all(np.abs(xyz[:, :2] - zone) < NLZ_HALF_SIZE, axis=1)

    height, width = sweep['range_image'].shape
    range_image = np.full((height, width, 4), -1.0, dtype=np.float32)
    range_image[row, col] = np.column_stack([sweep['range_image'][row, col], intensity, elongation,
                                             np.where(nlz, 1.0, -1.0)])
    euler = np.array([rng.normal(0.0, 0.01), rng.normal(0.0, 0.01), rng.uniform(-np.pi, np.pi)])
    position = np.array([rng.uniform(-500.0, 500.0), rng.uniform(-500.0, 500.0), rng.uniform(-20.0, 20.0)])
    frame_pose = _pose_matrix(*euler, position)
    pixel_pose = None
    if segment % 2:
        column_pose = _rolling_pose(rng, euler, position, width)
        pixel_pose = np.broadcast_to(column_pose, (height, width, 6))
        xyz = _to_frame_pose(xyz, column_pose, col, frame_pose)
    extrinsic = _pose_matrix(0.0, 0.0, np.radians(TOP_EXTRINSIC_YAW_DEG), origin)
    return {
        'xyz': xyz, 'intensity': intensity, 'elongation': elongation, 'nlz': nlz,
        'range_image': range_image, 'pixel_pose': pixel_pose, 'frame_pose': frame_pose,
        'extrinsic': extrinsic, 'origin': origin, 'lidar': lidar, 'segment': segment_name(segment),
        'index': index,
    }


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
    """A serialized Waymo `Frame`: a FRONT calibration listed first (readers must select the
    TOP lidar by name), the TOP calibration, the frame pose and the TOP range image."""
    message = waymo_proto.Frame(timestamp_micros=1_550_000_000_000_000 + 100_000 * frame['index'])
    message.context.name = f'{segment:04d}'
    front = message.context.laser_calibrations.add(name=_LASER_FRONT, beam_inclination_min=-1.57,
                                                   beam_inclination_max=0.52)
    front.extrinsic.transform.extend(_pose_matrix(0.0, 0.0, 0.0, (4.07, 0.0, 0.69)).ravel().tolist())
    top = message.context.laser_calibrations.add(name=waymo_proto.LASER_TOP)
    ascending = frame['lidar'].inclinations[::-1]  # stored lowest beam first
    top.beam_inclinations.extend(ascending.tolist())
    # outer edges of the extreme rows, so uniform beams are reproduced from min/max alone
    top.beam_inclination_min = ascending[0] - (ascending[1] - ascending[0]) / 2
    top.beam_inclination_max = ascending[-1] + (ascending[-1] - ascending[-2]) / 2
    top.extrinsic.transform.extend(frame['extrinsic'].ravel().tolist())
    message.pose.transform.extend(frame['frame_pose'].ravel().tolist())
    ri = message.lasers.add(name=waymo_proto.LASER_TOP).ri_return1
    ri.range_image_compressed = _compressed_matrix(frame['range_image'])
    if frame['pixel_pose'] is not None:
        ri.range_image_pose_compressed = _compressed_matrix(frame['pixel_pose'])
    return message.SerializeToString()


def _truth(frame, path):
    keys = ('xyz', 'intensity', 'elongation', 'nlz', 'origin', 'segment', 'index')
    return dict({k: frame[k] for k in keys}, path=path, has_pixel_pose=frame['pixel_pose'] is not None)


def _write_image_sets(root, num_segments):
    """ImageSets list `<segment>.tfrecord` names as OpenPCDet's do; the last fifth (at least
    one segment) goes to val."""
    names = [f'{segment_name(s)}.tfrecord\n' for s in range(num_segments)]
    num_val = max(1, num_segments // 5)
    (root / 'ImageSets').mkdir(parents=True, exist_ok=True)
    (root / 'ImageSets' / 'train.txt').write_text(''.join(names[:-num_val]))
    (root / 'ImageSets' / 'val.txt').write_text(''.join(names[-num_val:]))
