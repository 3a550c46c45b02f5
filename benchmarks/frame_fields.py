"""The alternative the Waymo reader was measured against (benchmarks/RESULTS.md): walk a serialized Frame on the
wire and keep only the top-level fields the lidar reader declares, so that camera images and labels are never
parsed. With the reader's subset Frame class it saves nothing (upb skips unknown fields at memcpy speed), so
the reader parses the whole record."""
import sys
from pathlib import Path

from google.protobuf.message import DecodeError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from also_pcdet.datasets.readers import waymo_proto  # noqa: E402


def _varint(data, pos: int):
    """(value, next position) of the base-128 varint at `pos`."""
    value = shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise DecodeError('varint longer than 10 bytes')
    raise DecodeError('truncated varint')


_FIXED_SIZES = {1: 8, 5: 4}   # wire types 1 (64-bit) and 5 (32-bit)
FRAME_LIDAR_FIELDS = frozenset(number for _, number, _, _ in dict(waymo_proto._MESSAGES)['Frame'])


def lidar_fields(record: bytes) -> bytes:
    """The serialized Frame `record` with only its FRAME_LIDAR_FIELDS (context, timestamp, pose, lasers): the
    top-level fields are walked on the wire and the others (camera images, most of a real frame's bytes,
    labels, ...) are never parsed or copied. Parses to what the whole record gives for these fields."""
    data, pos, kept = memoryview(record), 0, []
    while pos < len(data):
        start = pos
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, pos = _varint(data, pos)
        elif wire_type == 2:
            length, pos = _varint(data, pos)
            pos += length
        elif wire_type in _FIXED_SIZES:
            pos += _FIXED_SIZES[wire_type]
        else:
            raise DecodeError(f'field {number}: unsupported wire type {wire_type}')
        if pos > len(data):
            raise DecodeError(f'field {number} runs past the end of the record')
        if number in FRAME_LIDAR_FIELDS:
            kept.append(data[start:pos])
    return b''.join(kept)
