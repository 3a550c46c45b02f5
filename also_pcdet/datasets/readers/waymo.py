"""Waymo Open Dataset sweeps: OpenPCDet's processed `.npy` frames and raw `Frame` tfrecords.

Both readers return the same points for the same frame, in OpenPCDet's order: float32 (N, 5) x, y, z,
intensity, elongation in the vehicle frame, lidar by lidar (TOP, FRONT, SIDE_LEFT, SIDE_RIGHT, REAR:
LaserName order), each lidar's first returns then its second returns. The columns `tanh_dims` are
tanh-squashed as OpenPCDet's loader does (its POINTS_TANH_DIM; default the intensity, column 3; DSVT: [3, 4]).
Points inside a no-label zone (NLZ flag 1; -1 = outside) are kept unless `keep_nlz` is False (OpenPCDet's
DISABLE_NLZ_FLAG_ON_POINTS: its code drops them by default, its stock waymo_dataset.yaml keeps them). With the
points comes a RayOrigins: one table row per lidar (its extrinsic translation) and each point's row, so every
ray starts at the lidar that cast it.
"""
import zlib

import numpy as np
from google.protobuf.message import DecodeError

from ...config_schema import WAYMO_LIDAR_NAMES
from ..ray_origins import RayOrigins
from . import waymo_proto
from .errors import SweepError, refuse_special
from .info_pickle import load_info_pickle
from .tfrecord_io import read_record

# Lidar mounting points (extrinsic translations) in Waymo's vehicle frame, metres: approximately those of
# the released segments' laser_calibrations. The tfrecord reader uses each frame's own extrinsics.
WAYMO_LIDAR_ORIGINS = {'TOP': (1.43, 0.0, 2.184), 'FRONT': (4.07, 0.0, 0.691), 'SIDE_LEFT': (3.245, 1.025, 0.981),
                       'SIDE_RIGHT': (3.245, -1.025, 0.981), 'REAR': (-1.154, 0.0, 0.466)}
WAYMO_TOP_LIDAR_ORIGIN = WAYMO_LIDAR_ORIGINS['TOP']
WAYMO_COLUMNS = 5  # x, y, z, intensity, elongation
DEFAULT_TANH_DIMS = (3,)  # OpenPCDet without POINTS_TANH_DIM: the intensity


def squash(points: np.ndarray, tanh_dims) -> np.ndarray:
    """tanh of the columns `tanh_dims` (None: DEFAULT_TANH_DIMS), in place, as OpenPCDet's get_lidar."""
    for dim in DEFAULT_TANH_DIMS if tanh_dims is None else tanh_dims:
        points[:, dim] = np.tanh(points[:, dim])
    return points


def lidar_origin_table(origins=None) -> np.ndarray:
    """(5, 3) float64 lidar positions in LaserName order from a {name: xyz} mapping (default: Waymo's)."""
    origins = WAYMO_LIDAR_ORIGINS if origins is None else origins
    return np.array([origins[name] for name in WAYMO_LIDAR_NAMES], dtype=np.float64)


def read_waymo_npy(path, lidar_counts, origins=None, keep_nlz=True, tanh_dims=None):
    """An OpenPCDet processed frame (N, 6): x, y, z, intensity, elongation, NLZ flag; `lidar_counts` is its
    info's `num_points_of_each_lidar` (both returns of each lidar, LaserName order), `origins` the lidar
    positions (default WAYMO_LIDAR_ORIGINS)."""
    refuse_special(path)
    try:
        raw = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise SweepError(path, f'cannot load .npy: {err}') from err
    if not isinstance(raw, np.ndarray) or raw.ndim != 2 or raw.shape[1] != 6 or raw.dtype.kind != 'f':
        raise SweepError(path, f'expected a float (N, 6) array, got {getattr(raw, "dtype", type(raw))} '
                               f'{getattr(raw, "shape", "")}')
    counts = np.asarray(lidar_counts, dtype=np.int64)
    problem = lidar_count_problem(counts)
    if problem:
        raise SweepError(path, f'its info\'s {problem}')
    if counts.sum() != len(raw):
        raise SweepError(path, f'its info\'s num_points_of_each_lidar {counts.tolist()} adds up to {counts.sum()} '
                               f'points, the file has {len(raw)}')
    index = np.repeat(np.arange(len(counts), dtype=np.int8), counts)
    points = raw[:, :5].astype(np.float32)
    if not keep_nlz:
        outside = raw[:, 5] == -1
        points, index = points[outside], index[outside]
    return squash(points, tanh_dims), RayOrigins(lidar_origin_table(origins), index, WAYMO_LIDAR_NAMES)


def lidar_count_problem(counts) -> str:
    """What is wrong with a frame's num_points_of_each_lidar (one count >= 0 per lidar, TOP first; '' if fine)."""
    counts = np.asarray(counts)
    if counts.ndim != 1 or len(counts) > len(WAYMO_LIDAR_NAMES):
        return (f'num_points_of_each_lidar {counts.tolist()} has {counts.size} counts; Waymo has '
                f'{len(WAYMO_LIDAR_NAMES)} lidars ({", ".join(WAYMO_LIDAR_NAMES)}), one count each')
    if (counts < 0).any():
        return f'num_points_of_each_lidar {counts.tolist()} has a negative count'
    return ''


def read_waymo_info(path) -> dict:
    """{sample_idx: num_points_of_each_lidar} from an OpenPCDet per-segment info list `<segment>.pkl`.
    Only plain values and numpy arrays are unpickled: anything else in the file is refused."""
    infos = load_info_pickle(path)
    if not isinstance(infos, list):
        raise SweepError(path, f'expected a list of frame infos, got {type(infos).__name__}')
    counts = {}
    for info in infos:
        try:
            sample = info['point_cloud']['sample_idx'] if 'point_cloud' in info else info['sample_idx']
            counts[int(sample)] = [int(c) for c in info['num_points_of_each_lidar']]
        except (KeyError, TypeError, ValueError) as err:
            raise SweepError(path, f'a frame info lacks point_cloud.sample_idx or num_points_of_each_lidar '
                                   f'({err!r})') from err
        problem = lidar_count_problem(counts[int(sample)])
        if problem:
            raise SweepError(path, f'frame {int(sample)}: {problem}')
    return counts


def read_waymo_tfrecord_frame(path, offset, keep_nlz=True, tanh_dims=None):
    """Every lidar's two returns of the `Frame` record at byte `offset` of a tfrecord, each ray from its own
    lidar's extrinsic (TOP points also through their per-pixel pose when the frame has one), as
    OpenPCDet's converter builds its `.npy` frames."""
    where = f'record at offset {offset}'
    frame = waymo_proto.Frame()
    try:
        frame.ParseFromString(read_record(path, offset))
    except DecodeError as err:
        raise SweepError(path, f'{where}: not a Waymo Frame ({err})') from err
    lasers = {laser.name: laser for laser in frame.lasers}
    calibrations = {c.name: c for c in frame.context.laser_calibrations}
    for name, what in ((lasers, 'laser'), (calibrations, 'laser calibration')):
        if waymo_proto.LASER_TOP not in name:
            raise SweepError(path, f'{where}: no TOP {what}')
    table = lidar_origin_table()
    points, index = [], []
    for name in sorted(n for n in lasers if 1 <= n <= len(WAYMO_LIDAR_NAMES)):
        lidar = WAYMO_LIDAR_NAMES[name - 1]
        if name not in calibrations:
            raise SweepError(path, f'{where}: no {lidar} laser calibration')
        calibration, laser = calibrations[name], lasers[name]
        extrinsic = _transform(path, where, calibration.extrinsic, f'{lidar} lidar extrinsic')
        table[name - 1] = extrinsic[:3, 3]
        first = _matrix(path, where, laser.ri_return1.range_image_compressed, 4, f'{lidar} range image')
        images = [first]
        if laser.ri_return2.range_image_compressed:
            images.append(_matrix(path, where, laser.ri_return2.range_image_compressed, 4,
                                  f'{lidar} second-return range image'))
        pose = None
        if name == waymo_proto.LASER_TOP and laser.ri_return1.range_image_pose_compressed:
            pose = _matrix(path, where, laser.ri_return1.range_image_pose_compressed, 6, 'range image pose')
        inclination = _row_inclinations(path, where, calibration, first.shape[0], lidar)
        for image in images:
            part = _range_image_points(path, where, frame, image, extrinsic, inclination, pose, keep_nlz)
            points.append(part)
            index.append(np.full(len(part), name - 1, dtype=np.int8))
    return squash(np.concatenate(points), tanh_dims), RayOrigins(table, np.concatenate(index), WAYMO_LIDAR_NAMES)


def _range_image_points(path, where, frame, image, extrinsic, inclination, pixel_pose, keep_nlz):
    """float32 (M, 5) points of one range image (row-major), in the vehicle frame at the frame pose; intensity
    and elongation as stored (`squash` follows)."""
    height, width = image.shape[:2]
    if len(inclination) != height:
        raise SweepError(path, f'{where}: {len(inclination)} beam inclinations for a range image of {height} rows')
    yaw_correction = np.arctan2(extrinsic[1, 0], extrinsic[0, 0])
    azimuth = np.pi - (np.arange(width) + 0.5) * (2.0 * np.pi / width) - yaw_correction
    valid = image[..., 0] > 0
    if not keep_nlz:
        valid &= image[..., 3] == -1
    rows, cols = np.nonzero(valid)
    ranges = image[rows, cols, 0].astype(np.float64)
    flat = ranges * np.cos(inclination)[rows]
    xyz = _affine(extrinsic[:3, :3], extrinsic[:3, 3], (
        flat * np.cos(azimuth)[cols], flat * np.sin(azimuth)[cols], ranges * np.sin(inclination)[rows]))
    if pixel_pose is not None:
        if pixel_pose.shape[:2] != (height, width):
            raise SweepError(path, f'{where}: range image pose is {pixel_pose.shape[:2]}, '
                                   f'range image is {(height, width)}')
        pose = pixel_pose[rows, cols].T  # float32 angles: the rotation is 10x faster, error < 1e-5 m
        xyz = _affine(_rotation(*pose[:3]), pose[3:].astype(np.float64), xyz)  # each pixel to the world
        try:
            world_to_vehicle = np.linalg.inv(_transform(path, where, frame.pose, 'frame pose'))
        except np.linalg.LinAlgError as err:
            raise SweepError(path, f'{where}: frame pose is not invertible') from err
        xyz = _affine(world_to_vehicle[:3, :3], world_to_vehicle[:3, 3], xyz)
    features = image[rows, cols, 1:3]
    return np.column_stack([*xyz, features[:, 0], features[:, 1]]).astype(np.float32)


def _matrix(path, where, blob, channels, what):
    """A zlib-compressed serialized MatrixFloat as an array [H, W, channels]."""
    if not blob:
        raise SweepError(path, f'{where}: no {what}')
    try:
        matrix = waymo_proto.MatrixFloat.FromString(zlib.decompress(blob))
    except (zlib.error, DecodeError) as err:
        raise SweepError(path, f'{where}: bad compressed {what} ({err})') from err
    dims = tuple(matrix.shape.dims)
    data = np.array(matrix.data, dtype=np.float32)
    if len(dims) != 3 or dims[2] != channels or min(dims) < 1 or data.size != np.prod(dims):
        raise SweepError(path, f'{where}: {what} has shape {list(dims)} with {data.size} values, '
                               f'expected [H, W, {channels}]')
    return data.reshape(dims)


def _transform(path, where, message, what):
    """A Transform message as a 4x4 matrix."""
    values = np.array(message.transform, dtype=np.float64)
    if values.size != 16:
        raise SweepError(path, f'{where}: {what} has {values.size} values, expected 16')
    return values.reshape(4, 4)


def _row_inclinations(path, where, calibration, height, lidar):
    """Beam inclination of each range image row (row 0 = highest), radians."""
    if len(calibration.beam_inclinations):
        ascending = np.array(calibration.beam_inclinations, dtype=np.float64)
    elif calibration.HasField('beam_inclination_min') and calibration.HasField('beam_inclination_max'):
        low, high = calibration.beam_inclination_min, calibration.beam_inclination_max
        ascending = low + (np.arange(height) + 0.5) / height * (high - low)
    else:
        raise SweepError(path, f'{where}: {lidar} calibration has no beam inclinations')
    return ascending[::-1]


def _affine(rotation, translation, xyz):
    """rotation @ xyz + translation on coordinate rows; entries may be scalars or per-point arrays."""
    return tuple(rotation[i][0] * xyz[0] + rotation[i][1] * xyz[1] + rotation[i][2] * xyz[2] + translation[i]
                 for i in range(3))


def _rotation(roll, pitch, yaw):
    """Rz(yaw) @ Ry(pitch) @ Rx(roll) as nested rows of per-point entries."""
    cr, sr = np.cos(roll), np.sin(roll)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cy, sy = np.cos(yaw), np.sin(yaw)
    return ((cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr),
            (sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr),
            (-sp, cp * sr, cp * cr))
