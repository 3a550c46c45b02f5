"""Waymo Frame records with their camera images and labels (most of a real frame's bytes): the reader
ignores them, and the lidar-only decoding the benchmark compares it with (benchmarks/frame_fields.py) parses
the same lidar fields and refuses a damaged record."""
import sys
import numpy as np
import pytest
from google.protobuf.message import DecodeError

from also_pcdet.datasets.readers import waymo_proto
from also_pcdet.datasets.readers.tfrecord_io import index_tfrecord, read_record, write_tfrecord
from also_pcdet.datasets.readers.waymo import read_waymo_tfrecord_frame
from also_pcdet.datasets.synthetic.layout_writers import write_waymo_tfrecord_sweeps
from also_pcdet.datasets.synthetic.waymo_cameras import with_camera_parts
from conftest import REPO

sys.path.insert(0, str(REPO / 'benchmarks'))
from frame_fields import lidar_fields  # noqa: E402


@pytest.fixture(scope='module')
def tfrecord(tmp_path_factory):
    root = tmp_path_factory.mktemp('waymo_tfrecord')
    write_waymo_tfrecord_sweeps(root, 2, seed=4)
    return sorted((root / 'raw_data').glob('*.tfrecord'))[0]


@pytest.fixture(scope='module')
def frame_record(tfrecord):
    return read_record(tfrecord, index_tfrecord(tfrecord)[0])


def test_the_reader_ignores_camera_images_and_labels(tfrecord, frame_record, tmp_path):
    """The same frame with its camera side appended, written as a one-record tfrecord, reads to the same points."""
    with_cameras = tmp_path / 'with_cameras.tfrecord'
    write_tfrecord(with_cameras, [with_camera_parts(frame_record, np.random.default_rng(1), image_bytes=50_000)])
    points, origins = read_waymo_tfrecord_frame(with_cameras, 0)
    expected_points, expected_origins = read_waymo_tfrecord_frame(tfrecord, index_tfrecord(tfrecord)[0])
    np.testing.assert_array_equal(points, expected_points)
    assert len(points) > 1000


def test_lidar_fields_parse_like_the_whole_record(frame_record):
    record = with_camera_parts(frame_record, np.random.default_rng(0), image_bytes=20_000)
    assert len(record) > len(frame_record) + 100_000
    whole = waymo_proto.Frame.FromString(record)
    lidar_only = waymo_proto.Frame.FromString(lidar_fields(record))
    assert len(lidar_fields(record)) == len(frame_record)   # every camera/label byte skipped
    whole.DiscardUnknownFields()
    assert lidar_only == whole and len(lidar_only.lasers) >= 1 and lidar_only.pose.transform


def test_a_damaged_record_is_refused(frame_record):
    record = with_camera_parts(frame_record, np.random.default_rng(0), image_bytes=1000)
    with pytest.raises(DecodeError, match='past the end'):
        lidar_fields(record[:-5])
    with pytest.raises(DecodeError, match='wire type'):
        lidar_fields(bytes([5 << 3 | 7]) + record)
