"""Waymo readers against ray-cast truth: tfrecord container, Frame decoding, processed .npy."""
import pickle
import zlib

import numpy as np
import pytest

from also_pcdet.datasets.readers import waymo_proto
from also_pcdet.datasets.readers.errors import SweepError
from also_pcdet.datasets.readers.tfrecord_io import (crc32c, index_tfrecord, masked_crc32c, read_record,
                                                     write_tfrecord)
from also_pcdet.datasets.readers.waymo import (WAYMO_LIDAR_NAMES, WAYMO_LIDAR_ORIGINS, WAYMO_TOP_LIDAR_ORIGIN,
                                               read_waymo_info, read_waymo_npy, read_waymo_tfrecord_frame)
from also_pcdet.datasets.synthetic.lidar import LidarModel
from also_pcdet.datasets.synthetic.waymo_writer import (TOP_EXTRINSIC_YAW_DEG, segment_name,
                                                        write_waymo_processed, write_waymo_tfrecord)

SEED = 7


@pytest.fixture(scope='module')
def tfrecord_frames(tmp_path_factory):
    """Two segments of two frames; segment 1 carries per-pixel poses."""
    return write_waymo_tfrecord(tmp_path_factory.mktemp('waymo_raw'), 2, 2, SEED)


@pytest.fixture(scope='module')
def processed_frames(tmp_path_factory):
    root = tmp_path_factory.mktemp('waymo_processed')
    return root, write_waymo_processed(root, 2, 1, SEED)


def _bitwise_crc32c(data):
    """Reference CRC-32C, one bit at a time."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 * (crc & 1))
    return crc ^ 0xFFFFFFFF


def test_crc32c_matches_known_values_and_reference():
    assert crc32c(b'123456789') == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 test vectors
    assert crc32c(bytes(range(32))) == 0x46DD794E
    data = np.random.default_rng(0).integers(0, 256, 30_011, dtype=np.uint8).tobytes()
    assert crc32c(data) == _bitwise_crc32c(data) == crc32c(memoryview(data)) == crc32c(bytearray(data))


def test_tfrecord_roundtrip_and_index(tmp_path):
    rng = np.random.default_rng(1)
    records = [b'', b'x', rng.bytes(100), rng.bytes(70_000)]
    path = tmp_path / 'a.tfrecord'
    offsets = write_tfrecord(path, records)
    assert index_tfrecord(path) == offsets
    assert [read_record(path, o) for o in offsets] == records
    raw = path.read_bytes()
    assert raw[8:12] == masked_crc32c(raw[:8]).to_bytes(4, 'little')


def test_tfrecord_corruption_raises_sweep_error(tmp_path):
    path = tmp_path / 'bad.tfrecord'
    offsets = write_tfrecord(path, [b'a' * 50, b'b' * 5000])
    good = path.read_bytes()

    flipped = bytearray(good)
    flipped[offsets[1] + 12 + 100] ^= 0x01  # a data byte of the second record
    path.write_bytes(bytes(flipped))
    assert index_tfrecord(path) == offsets  # the index reads headers only
    with pytest.raises(SweepError, match=f'data CRC.*offset {offsets[1]}') as err:
        read_record(path, offsets[1])
    assert err.value.path == str(path) and str(path) in str(err.value)

    flipped = bytearray(good)
    flipped[offsets[1]] ^= 0x01  # the second record's length
    path.write_bytes(bytes(flipped))
    with pytest.raises(SweepError, match=f'length CRC at offset {offsets[1]}'):
        index_tfrecord(path)

    path.write_bytes(good[:-3])
    with pytest.raises(SweepError, match=f'truncated record at offset {offsets[1]}'):
        index_tfrecord(path)
    with pytest.raises(SweepError, match='truncated'):
        read_record(path, offsets[1])
    path.write_bytes(good[:offsets[1] + 5])
    with pytest.raises(SweepError, match='truncated record header'):
        index_tfrecord(path)
    with pytest.raises(SweepError, match='no record at offset'):
        read_record(path, len(good) + 10)


def test_index_counts_frames(tfrecord_frames):
    for name in {t['segment'] for t in tfrecord_frames}:
        frames = [t for t in tfrecord_frames if t['segment'] == name]
        assert index_tfrecord(frames[0]['path']) == [t['offset'] for t in frames]


def check_matches_truth(points, origins, truth, keep=None):
    keep = np.ones(len(truth['xyz']), bool) if keep is None else keep
    assert points.dtype == np.float32 and points.shape == (keep.sum(), 5)
    np.testing.assert_allclose(points[:, :3], truth['xyz'][keep], atol=1e-3, rtol=0)
    np.testing.assert_allclose(points[:, 3], np.tanh(truth['intensity'][keep]), atol=1e-6)
    np.testing.assert_array_equal(points[:, 4], truth['elongation'][keep])
    np.testing.assert_array_equal(origins.index, truth['lidar'][keep])
    assert origins.names == WAYMO_LIDAR_NAMES and origins.table.dtype == np.float64


def test_decoded_frames_match_raycast_truth(tfrecord_frames):
    """All five lidars and both returns, NLZ points kept (OpenPCDet's DISABLE_NLZ_FLAG_ON_POINTS: True),
    each point tagged with the lidar that cast it, whose extrinsic gives its ray origin."""
    assert any(t['has_pixel_pose'] for t in tfrecord_frames)
    assert any(not t['has_pixel_pose'] for t in tfrecord_frames)
    assert all(t['nlz'].any() for t in tfrecord_frames)
    for truth in tfrecord_frames:
        assert (truth['counts'] > 0).all() and truth['second'].any()
        points, origins = read_waymo_tfrecord_frame(truth['path'], truth['offset'])
        check_matches_truth(points, origins, truth)
        np.testing.assert_allclose(origins.table, truth['origins'])
        np.testing.assert_allclose(origins.table[0], WAYMO_TOP_LIDAR_ORIGIN)
        dropped, origins = read_waymo_tfrecord_frame(truth['path'], truth['offset'], keep_nlz=False)
        check_matches_truth(dropped, origins, truth, ~truth['nlz'])


def test_synthetic_lidars_are_waymo_like(tfrecord_frames):
    """Five lidars at their mounting points: TOP up to 75 m, the four short-range ones up to 20 m on their
    own side of the car; second returns lie behind the first of their lidar."""
    truth = tfrecord_frames[0]
    assert not truth['has_pixel_pose']
    for row, name in enumerate(WAYMO_LIDAR_NAMES):
        mine = truth['lidar'] == row
        reach = np.linalg.norm(truth['xyz'][mine] - WAYMO_LIDAR_ORIGINS[name], axis=1)
        assert reach.max() <= (75.0 if name == 'TOP' else 20.0) + 0.1
        # OpenPCDet's order: each lidar's first returns, then its second returns
        assert np.all(np.diff(truth['second'][mine].astype(int)) >= 0)
    outward = {'FRONT': (0, 1), 'SIDE_LEFT': (1, 1), 'SIDE_RIGHT': (1, -1), 'REAR': (0, -1)}
    for name, (axis, sign) in outward.items():
        mine = truth['lidar'] == WAYMO_LIDAR_NAMES.index(name)
        assert np.all(sign * (truth['xyz'][mine, axis] - WAYMO_LIDAR_ORIGINS[name][axis]) > -1e-6)
    assert 0.01 < truth['second'].mean() < 0.2


def test_truth_exercises_yaw_correction_and_pixel_pose(tfrecord_frames, tmp_path):
    """The extrinsic is yawed (a decoder without the azimuth correction would rotate every point by
    it) and ignoring the per-pixel pose moves points well past the tolerance."""
    truth = next(t for t in tfrecord_frames if t['has_pixel_pose'])
    frame = waymo_proto.Frame.FromString(read_record(truth['path'], truth['offset']))
    top = next(c for c in frame.context.laser_calibrations if c.name == waymo_proto.LASER_TOP)
    extrinsic = np.reshape(top.extrinsic.transform, (4, 4))
    assert np.degrees(np.arctan2(extrinsic[1, 0], extrinsic[0, 0])) == pytest.approx(TOP_EXTRINSIC_YAW_DEG)
    assert frame.lasers[0].name == waymo_proto.LASER_TOP
    frame.lasers[0].ri_return1.ClearField('range_image_pose_compressed')
    unposed = tmp_path / 'unposed.tfrecord'
    write_tfrecord(unposed, [frame.SerializeToString()])
    points, _ = read_waymo_tfrecord_frame(unposed, 0)
    top_points = truth['lidar'] == 0
    assert np.abs(points[top_points, :3] - truth['xyz'][top_points]).max() > 0.1
    np.testing.assert_allclose(points[~top_points, :3], truth['xyz'][~top_points], atol=1e-3, rtol=0)


def test_uniform_inclinations_and_unknown_fields(tmp_path):
    """min/max inclinations stand in for the list; fields this schema lacks (cameras) are skipped."""
    lidar = LidarModel(inclinations_deg=tuple(np.linspace(2.0, -16.0, 16)), azimuth_step_deg=1.0,
                       max_range=75.0, min_range=1.0, mount_height=WAYMO_TOP_LIDAR_ORIGIN[2])
    truth = write_waymo_tfrecord(tmp_path, 1, 1, SEED, top=lidar)[0]
    frame = waymo_proto.Frame.FromString(read_record(truth['path'], truth['offset']))
    top = next(c for c in frame.context.laser_calibrations if c.name == waymo_proto.LASER_TOP)
    top.ClearField('beam_inclinations')
    camera_image = b'\x22\x05\x08\x01\x12\x01J'  # Frame.images (field 4): CameraImage{name: 1, image: 'J'}
    path = tmp_path / 'uniform.tfrecord'
    write_tfrecord(path, [frame.SerializeToString() + camera_image])
    points, origins = read_waymo_tfrecord_frame(path, 0)
    check_matches_truth(points, origins, truth)


def _write_frame(tmp_path, frame):
    path = tmp_path / 'frame.tfrecord'
    write_tfrecord(path, [frame.SerializeToString()])
    return path


def test_bad_frames_raise_sweep_error(tfrecord_frames, tmp_path):
    truth = tfrecord_frames[0]
    good = waymo_proto.Frame.FromString(read_record(truth['path'], truth['offset']))

    frame = waymo_proto.Frame()
    frame.CopyFrom(good)
    frame.lasers[0].name = 2
    with pytest.raises(SweepError, match='offset 0: no TOP laser') as err:
        read_waymo_tfrecord_frame(_write_frame(tmp_path, frame), 0)
    assert err.value.path.endswith('frame.tfrecord')

    frame.CopyFrom(good)
    frame.lasers[0].ri_return1.range_image_compressed = b'not zlib data'
    with pytest.raises(SweepError, match='bad compressed TOP range image'):
        read_waymo_tfrecord_frame(_write_frame(tmp_path, frame), 0)

    frame.CopyFrom(good)
    matrix = waymo_proto.MatrixFloat(data=[1.0] * 10)
    matrix.shape.dims.extend([2, 2, 4])
    frame.lasers[3].ri_return2.range_image_compressed = zlib.compress(matrix.SerializeToString())
    with pytest.raises(SweepError, match=r'SIDE_RIGHT second-return range image has shape \[2, 2, 4\] with 10'):
        read_waymo_tfrecord_frame(_write_frame(tmp_path, frame), 0)

    frame.CopyFrom(good)
    rear = next(c for c in frame.context.laser_calibrations if c.name == 5)
    frame.context.laser_calibrations.remove(rear)
    with pytest.raises(SweepError, match='no REAR laser calibration'):
        read_waymo_tfrecord_frame(_write_frame(tmp_path, frame), 0)

    path = tmp_path / 'junk.tfrecord'
    write_tfrecord(path, [b'\xff' * 64])
    with pytest.raises(SweepError, match='not a Waymo Frame'):
        read_waymo_tfrecord_frame(path, 0)


def test_processed_layout_info_and_npy_reader(processed_frames, tfrecord_frames):
    """OpenPCDet's layout: frames lidar by lidar, the segment's info list counting each lidar's points
    (both returns); the .npy and the tfrecord of one frame give the same points and origins."""
    root, truths = processed_frames
    names = [segment_name(s) for s in range(2)]
    assert (root / 'ImageSets' / 'train.txt').read_text() == f'{names[0]}.tfrecord\n'
    assert (root / 'ImageSets' / 'val.txt').read_text() == f'{names[1]}.tfrecord\n'
    for truth in truths:
        folder = root / 'waymo_processed_data_v0_5_0' / truth['segment']
        assert truth['path'] == folder / '0000.npy'
        raw = np.load(truth['path'])
        assert raw.dtype == np.float32 and raw.shape[1] == 6
        assert set(np.unique(raw[:, 5])) == {-1.0, 1.0}
        counts = read_waymo_info(folder / f'{truth["segment"]}.pkl')
        assert counts == {0: truth['counts'].tolist()} and sum(counts[0]) == len(raw)
        points, origins = read_waymo_npy(truth['path'], counts[0])
        check_matches_truth(points, origins, truth)
        np.testing.assert_array_equal(origins.table[0], WAYMO_TOP_LIDAR_ORIGIN)
        dropped, dropped_origins = read_waymo_npy(truth['path'], counts[0], keep_nlz=False)
        check_matches_truth(dropped, dropped_origins, truth, raw[:, 5] == -1)
        moved = dict(WAYMO_LIDAR_ORIGINS, REAR=(0.0, 0.0, 1.8))
        assert read_waymo_npy(truth['path'], counts[0], moved)[1].table[4].tolist() == [0.0, 0.0, 1.8]
        # the same (seed, segment, frame) decoded from the tfrecord gives the same sweep, same origins
        raw_truth = next(t for t in tfrecord_frames if (t['segment'], t['index']) == (truth['segment'], 0))
        decoded, decoded_origins = read_waymo_tfrecord_frame(raw_truth['path'], raw_truth['offset'])
        np.testing.assert_allclose(decoded, points, atol=1e-3)
        np.testing.assert_array_equal(decoded_origins.index, origins.index)
        np.testing.assert_allclose(decoded_origins.table, origins.table)


def test_bad_npy_and_info_raise_sweep_error(processed_frames, tmp_path):
    path = tmp_path / 'five.npy'
    np.save(path, np.zeros((10, 5), np.float32))
    with pytest.raises(SweepError, match=r'expected a float \(N, 6\) array'):
        read_waymo_npy(path, [10])
    np.save(path, np.zeros((100, 6), np.float32))
    with pytest.raises(SweepError, match=r'num_points_of_each_lidar \[60, 30\] adds up to 90 points, the file has 100'):
        read_waymo_npy(path, [60, 30])
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(SweepError, match='cannot load') as err:
        read_waymo_npy(path, [100])
    assert str(path) in str(err.value)

    class Payload:  # a pickle that would run code when loaded
        def __reduce__(self):
            return (print, ('pwned',))
    info = tmp_path / 'evil.pkl'
    info.write_bytes(pickle.dumps([{'num_points_of_each_lidar': [1], 'sample_idx': 0, 'x': Payload()}]))
    with pytest.raises(SweepError, match='refusing to load builtins.print'):
        read_waymo_info(info)
    info.write_bytes(pickle.dumps([{'point_cloud': {'sample_idx': 0}}]))
    with pytest.raises(SweepError, match='lacks point_cloud.sample_idx or num_points_of_each_lidar'):
        read_waymo_info(info)
