"""The camera side of a Waymo `Frame` for synthetic records: five camera images (incompressible bytes of a
JPEG's size) and 3D laser labels, appended on the wire to a serialized Frame. Real frames carry them, and
the images are most of their bytes: lidar-only decoding is measured and tested on records shaped so."""
import struct

import numpy as np

IMAGE_BYTES = 300_000   # a Waymo camera JPEG (1920 x 1280 or 1920 x 886) is a few hundred kB
# field numbers of Waymo's dataset.proto / label.proto
FRAME_IMAGES, FRAME_LASER_LABELS = 4, 6
CAMERA_IMAGE_NAME, CAMERA_IMAGE_IMAGE = 1, 2
LABEL_BOX = 1           # Label.box: Box with doubles center_x, center_y, center_z, width, length, height, heading


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def with_camera_parts(record: bytes, rng: np.random.Generator, num_images: int = 5,
                      image_bytes: int = IMAGE_BYTES, num_labels: int = 60) -> bytes:
    """`record` (a serialized Frame) followed by `num_images` CameraImage entries (name 1..5, random image
    bytes) and `num_labels` laser labels with a 3D box: still one valid Frame."""
    parts = [record]
    for camera in range(1, num_images + 1):
        image = _varint(CAMERA_IMAGE_NAME << 3) + _varint(camera) + _length_delimited(CAMERA_IMAGE_IMAGE,
                                                                                     rng.bytes(image_bytes))
        parts.append(_length_delimited(FRAME_IMAGES, image))
    for values in rng.uniform(-50, 50, (num_labels, 7)):
        box = b''.join(_varint(number << 3 | 1) + struct.pack('<d', v) for number, v in enumerate(values, 1))
        parts.append(_length_delimited(FRAME_LASER_LABELS, _length_delimited(LABEL_BOX, box)))
    return b''.join(parts)
