"""Waymo readers against ray-cast truth: tfrecord container, Frame decoding, processed .npy."""
import zlib

import numpy as np
import pytest

from also_pcdet.datasets.readers import waymo_proto
from also_pcdet.datasets.readers.errors import SweepError
from also_pcdet.datasets.readers.tfrecord_io import (crc32c, index_tfrecord, masked_crc32c, read_record,
                                                     write_tfrecord)
from also_pcdet.datasets.readers.waymo import (WAYMO_TOP_LIDAR_ORIGIN, read_waymo_npy,
                                               read_waymo_tfrecord_frame)
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
    assert crc32c(data) == _bitwise_crc32c(data)  # long inputs take the parallel-lane path


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


def test_decoded_frames_match_raycast_truth(tfrecord_frames):
    assert any(t['has_pixel_pose'] for t in tfrecord_frames)
    assert any(not t['has_pixel_pose'] for t in tfrecord_frames)
    assert all(t['nlz'].any() for t in tfrecord_frames)
    for truth in tfrecord_frames:
        points, origin = read_waymo_tfrecord_frame(truth['path'], truth['offset'])
        keep = ~truth['nlz']
        assert points.dtype == np.float32 and points.shape == (keep.sum(), 5)
        np.testing.assert_allclose(points[:, :3], truth['xyz'][keep], atol=1e-3, rtol=0)
        np.testing.assert_allclose(points[:, 3], np.tanh(truth['intensity'][keep]), atol=1e-6)
        np.testing.assert_array_equal(points[:, 4], truth['elongation'][keep])
        assert origin.dtype == np.float64
        np.testing.assert_allclose(origin, WAYMO_TOP_LIDAR_ORIGIN)


def test_truth_exercises_yaw_correction_and_pixel_pose(tfrecord_frames, tmp_path):
    """The extrinsic is yawed (a decoder without the azimuth correction would rotate every point by
    it) and ignoring the per-pixel pose moves points well past the tolerance."""
    truth = next(t for t in tfrecord_frames if t['has_pixel_pose'])
    frame = waymo_proto.Frame.FromString(read_record(truth['path'], truth['offset']))
    top = next(c for c in frame.context.laser_calibrations if c.name == waymo_proto.LASER_TOP)
    extrinsic = np.reshape(top.extrinsic.transform, (4, 4))
    assert np.degrees(np.arctan2(extrinsic[1, 0], extrinsic[0, 0])) == pytest.approx(TOP_EXTRINSIC_YAW_DEG)
    frame.lasers[0].ri_return1.ClearField('range_image_pose_compressed')
    unposed = tmp_path / 'unposed.tfrecord'
    write_tfrecord(unposed, [frame.SerializeToString()])
    points, _ = read_waymo_tfrecord_frame(unposed, 0)
    assert np.abs(points[:, :3] - truth['xyz'][~truth['nlz']]).max() > 0.1


def test_uniform_inclinations_and_unknown_fields(tmp_path):
    """min/max inclinations stand in for the list; fields this schema lacks (cameras) are skipped."""
    lidar = LidarModel(inclinations_deg=tuple(np.linspace(2.0, -16.0, 16)), azimuth_step_deg=1.0,
                       max_range=75.0, min_range=1.0, mount_height=WAYMO_TOP_LIDAR_ORIGIN[2])
    truth = write_waymo_tfrecord(tmp_path, 1, 1, SEED, lidar=lidar)[0]
    frame = waymo_proto.Frame.FromString(read_record(truth['path'], truth['offset']))
    top = next(c for c in frame.context.laser_calibrations if c.name == waymo_proto.LASER_TOP)
    top.ClearField('beam_inclinations')
    camera_image = b'\x22\x05\x08\x01\x12\x01J'  # Frame.images (field 4): CameraImage{name: 1, image: 'J'}
    path = tmp_path / 'uniform.tfrecord'
    write_tfrecord(path, [frame.SerializeToString() + camera_image])
    points, _ = read_waymo_tfrecord_frame(path, 0)
    np.testing.assert_allclose(points[:, :3], truth['xyz'][~truth['nlz']], atol=1e-3, rtol=0)


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
    with pytest.raises(SweepError, match='bad compressed range image'):
        read_waymo_tfrecord_frame(_write_frame(tmp_path, frame), 0)

    frame.CopyFrom(good)
    matrix = waymo_proto.MatrixFloat(data=[1.0] * 10)
    matrix.shape.dims.extend([2, 2, 4])
    frame.lasers[0].ri_return1.range_image_compressed = zlib.compress(matrix.SerializeToString())
    with pytest.raises(SweepError, match=r'range image has shape \[2, 2, 4\] with 10 values'):
        read_waymo_tfrecord_frame(_write_frame(tmp_path, frame), 0)

    path = tmp_path / 'junk.tfrecord'
    write_tfrecord(path, [b'\xff' * 64])
    with pytest.raises(SweepError, match='not a Waymo Frame'):
        read_waymo_tfrecord_frame(path, 0)


def test_processed_layout_and_npy_reader(processed_frames, tfrecord_frames):
    root, truths = processed_frames
    names = [segment_name(s) for s in range(2)]
    assert (root / 'ImageSets' / 'train.txt').read_text() == f'{names[0]}.tfrecord\n'
    assert (root / 'ImageSets' / 'val.txt').read_text() == f'{names[1]}.tfrecord\n'
    for truth in truths:
        assert truth['path'] == root / 'waymo_processed_data_v0_5_0' / truth['segment'] / '0000.npy'
        raw = np.load(truth['path'])
        assert raw.dtype == np.float32 and raw.shape[1] == 6
        assert set(np.unique(raw[:, 5])) == {-1.0, 1.0}
        points, origin = read_waymo_npy(truth['path'])
        keep = ~truth['nlz']
        np.testing.assert_allclose(points[:, :3], truth['xyz'][keep], atol=1e-4, rtol=0)
        np.testing.assert_allclose(points[:, 3], np.tanh(raw[keep, 3]), rtol=1e-6)
        np.testing.assert_array_equal(points[:, 4], raw[keep, 4])
        np.testing.assert_array_equal(origin, WAYMO_TOP_LIDAR_ORIGIN)
        assert read_waymo_npy(truth['path'], origin=(0.0, 0.0, 1.8))[1].tolist() == [0.0, 0.0, 1.8]
        # the same (seed, segment, frame) decoded from the tfrecord gives the same sweep
        raw_truth = next(t for t in tfrecord_frames if (t['segment'], t['index']) == (truth['segment'], 0))
        decoded, _ = read_waymo_tfrecord_frame(raw_truth['path'], raw_truth['offset'])
        np.testing.assert_allclose(decoded, points, atol=1e-3)


def test_bad_npy_raises_sweep_error(tmp_path):
    path = tmp_path / 'five.npy'
    np.save(path, np.zeros((10, 5), np.float32))
    with pytest.raises(SweepError, match=r'expected a float \(N, 6\) array'):
        read_waymo_npy(path)
    np.save(path, np.zeros((100, 6), np.float32))
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(SweepError, match='cannot load') as err:
        read_waymo_npy(path)
    assert str(path) in str(err.value)
