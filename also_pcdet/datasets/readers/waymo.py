"""Waymo Open Dataset sweeps: OpenPCDet's processed `.npy` frames and raw `Frame` tfrecords.

Both readers return (points float32 (N, 5) x, y, z, intensity, elongation in the vehicle
frame, origin float64 (3,) = where the rays start, the TOP lidar in the vehicle frame).
As in OpenPCDet, points inside a no-label zone (NLZ flag != -1; Waymo writes 1 = inside,
-1 = outside) are dropped and intensity is squashed with tanh.
"""
import zlib

import numpy as np
from google.protobuf.message import DecodeError

from . import waymo_proto
from .errors import SweepError
from .tfrecord_io import read_record

# Typical TOP lidar mounting point (extrinsic translation) in Waymo's vehicle frame, metres.
WAYMO_TOP_LIDAR_ORIGIN = (1.43, 0.0, 2.184)


def read_waymo_npy(path, origin=WAYMO_TOP_LIDAR_ORIGIN):
    """An OpenPCDet processed frame (N, 6): x, y, z, intensity, elongation, NLZ flag."""
    try:
        raw = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise SweepError(path, f'cannot load .npy: {err}') from err
    if not isinstance(raw, np.ndarray) or raw.ndim != 2 or raw.shape[1] != 6 or raw.dtype.kind != 'f':
        raise SweepError(path, f'expected a float (N, 6) array, got {getattr(raw, "dtype", type(raw))} '
                               f'{getattr(raw, "shape", "")}')
    points = raw[raw[:, 5] == -1, :5].astype(np.float32, copy=False)
    points[:, 3] = np.tanh(points[:, 3])
    return points, np.array(origin, dtype=np.float64)


def read_waymo_tfrecord_frame(path, offset):
    """The TOP lidar's first return of the `Frame` record at byte `offset` of a tfrecord, as
    points in range-image row-major order (like OpenPCDet's processed frames)."""
    where = f'record at offset {offset}'
    frame = waymo_proto.Frame()
    try:
        frame.ParseFromString(read_record(path, offset))
    except DecodeError as err:
        raise SweepError(path, f'{where}: not a Waymo Frame ({err})') from err
    laser = _top(path, where, frame.lasers, 'laser')
    calibration = _top(path, where, frame.context.laser_calibrations, 'laser calibration')
    ri = laser.ri_return1
    image = _matrix(path, where, ri.range_image_compressed, 4, 'range image')
    height, width = image.shape[:2]
    extrinsic = _transform(path, where, calibration.extrinsic, 'TOP lidar extrinsic')

    inclination = _row_inclinations(path, where, calibration, height)
    yaw_correction = np.arctan2(extrinsic[1, 0], extrinsic[0, 0])
    azimuth = np.pi - (np.arange(width) + 0.5) * (2.0 * np.pi / width) - yaw_correction
    rows, cols = np.nonzero((image[..., 0] > 0) & (image[..., 3] == -1))
    ranges = image[rows, cols, 0].astype(np.float64)
    flat = ranges * np.cos(inclination)[rows]
    xyz = _affine(extrinsic[:3, :3], extrinsic[:3, 3], (
        flat * np.cos(azimuth)[cols], flat * np.sin(azimuth)[cols], ranges * np.sin(inclination)[rows]))

    if ri.range_image_pose_compressed:
        pixel_pose = _matrix(path, where, ri.range_image_pose_compressed, 6, 'range image pose')
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
    points = np.column_stack([*xyz, np.tanh(features[:, 0]), features[:, 1]]).astype(np.float32)
    return points, extrinsic[:3, 3].copy()


def _top(path, where, items, what):
    """The entry of a repeated field whose `name` is the TOP lidar."""
    for item in items:
        if item.name == waymo_proto.LASER_TOP:
            return item
    raise SweepError(path, f'{where}: no TOP {what}')


def _matrix(path, where, blob, channels, what):
    """A zlib-compressed serialized MatrixFloat as an array [H, W, channels]."""
    if not blob:
        raise SweepError(path, f'{where}: TOP laser has no {what}')
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


def _row_inclinations(path, where, calibration, height):
    """Beam inclination of each range image row (row 0 = highest), radians."""
    if len(calibration.beam_inclinations):
        ascending = np.array(calibration.beam_inclinations, dtype=np.float64)
        if ascending.size != height:
            raise SweepError(path, f'{where}: {ascending.size} beam inclinations for a range image '
                                   f'of {height} rows')
    elif calibration.HasField('beam_inclination_min') and calibration.HasField('beam_inclination_max'):
        low, high = calibration.beam_inclination_min, calibration.beam_inclination_max
        ascending = low + (np.arange(height) + 0.5) / height * (high - low)
    else:
        raise SweepError(path, f'{where}: TOP calibration has no beam inclinations')
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
