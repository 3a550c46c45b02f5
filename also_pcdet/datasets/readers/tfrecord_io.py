"""The TFRecord container read without TensorFlow, with its masked CRC-32C checks.

Each record is: uint64 length, uint32 masked crc32c(length bytes), the data,
uint32 masked crc32c(data); all little-endian.
"""
import os
import struct

import google_crc32c

from .errors import SweepError, refuse_special

_MASK_DELTA = 0xA282EAD8
_HEADER = 12
_FOOTER = 4


def crc32c(data):
    """CRC-32C of a bytes-like object, by google-crc32c (Google's C library; see benchmarks/RESULTS.md)."""
    return google_crc32c.value(data if isinstance(data, bytes) else bytes(data))


def masked_crc32c(data):
    """TFRecord's masked CRC: rotate right by 15 bits, add a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _read_header(f, path, offset, file_size):
    """Length of the record at `offset`, after checking its header."""
    header = f.read(_HEADER)
    if len(header) < _HEADER:
        raise SweepError(path, f'truncated record header at offset {offset}')
    (length,) = struct.unpack('<Q', header[:8])
    (length_crc,) = struct.unpack('<I', header[8:])
    if masked_crc32c(header[:8]) != length_crc:
        raise SweepError(path, f'bad length CRC at offset {offset}')
    end = offset + _HEADER + length + _FOOTER
    if end > file_size:
        raise SweepError(
            path, f'truncated record at offset {offset}: needs {end} bytes, file has {file_size}'
        )
    return length


def _open(path):
    refuse_special(path)
    try:
        return open(path, 'rb')
    except OSError as err:
        raise SweepError(path, f'cannot read: {err.strerror or err}') from err


def index_records(path):
    """(byte offsets of the records before the first damaged header, that damage's reason or None), reading
    only the headers (data CRCs are not checked). A file cut inside a record, with bytes appended or with a
    damaged length keeps every record before the damage; nothing after it can be found again."""
    offsets = []
    with _open(path) as f:
        file_size = os.fstat(f.fileno()).st_size
        offset = 0
        while offset < file_size:
            f.seek(offset)
            try:
                length = _read_header(f, path, offset, file_size)
            except SweepError as err:
                return offsets, err.reason
            offsets.append(offset)
            offset += _HEADER + length + _FOOTER
    return offsets, None


def index_tfrecord(path):
    """Byte offsets of every record (headers only); any damage raises SweepError."""
    offsets, damage = index_records(path)
    if damage:
        raise SweepError(path, damage)
    return offsets


def read_record(path, offset):
    """The data of the record starting at `offset`, with both CRCs checked."""
    with _open(path) as f:
        file_size = os.fstat(f.fileno()).st_size
        if not 0 <= offset < file_size:
            raise SweepError(path, f'no record at offset {offset} (file has {file_size} bytes)')
        f.seek(offset)
        length = _read_header(f, path, offset, file_size)
        data = f.read(length)
        (data_crc,) = struct.unpack('<I', f.read(_FOOTER))
    if masked_crc32c(data) != data_crc:
        raise SweepError(path, f'bad data CRC in record at offset {offset}')
    return data


def write_tfrecord(path, records):
    """Write `records` (bytes-like) as a TFRecord file; returns their offsets."""
    offsets = []
    with open(path, 'wb') as f:
        for record in records:
            offsets.append(f.tell())
            length = struct.pack('<Q', len(record))
            f.write(length)
            f.write(struct.pack('<I', masked_crc32c(length)))
            f.write(record)
            f.write(struct.pack('<I', masked_crc32c(record)))
    return offsets
