"""The TFRecord container in pure Python, with its masked CRC-32C checks.

Each record is: uint64 length, uint32 masked crc32c(length bytes), the data,
uint32 masked crc32c(data); all little-endian.
"""
import os
import struct

import numpy as np

from .errors import SweepError

_POLY = 0x82F63B78  # CRC-32C (Castagnoli), bit-reflected
_MASK_DELTA = 0xA282EAD8
_HEADER = 12
_FOOTER = 4
_LANES = 4096  # parallel lanes for long inputs
_SCALAR_MAX = 8192  # shorter inputs use the plain table loop (faster below ~10 kB)


def _make_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _make_table()
_TABLE_NP = np.array(_TABLE, dtype=np.uint32)
_BITS = np.arange(32, dtype=np.uint32)


def _register_scalar(data, reg=0):
    """CRC register after feeding `data` (no final inversion)."""
    table = _TABLE
    for byte in data:
        reg = table[(reg ^ byte) & 0xFF] ^ (reg >> 8)
    return reg


def _apply(op, regs):
    """Apply a GF(2) linear operator (32 column images, uint32) to registers."""
    bits = (regs[..., None] >> _BITS) & np.uint32(1)
    return np.bitwise_xor.reduce(bits * op, axis=-1)


_UNIT = np.uint32(1) << _BITS  # the identity operator
_ZERO_BYTE = np.array([_register_scalar(b'\0', int(v)) for v in _UNIT], dtype=np.uint32)


def _zeros_operator(num_bytes):
    """Operator advancing a register over `num_bytes` zero bytes."""
    step, result = _ZERO_BYTE, _UNIT
    while num_bytes:
        if num_bytes & 1:
            result = _apply(step, result)
        step = _apply(step, step)
        num_bytes >>= 1
    return result


def _register_lanes(data):
    """Register over `data` (at least 4 bytes) from an all-ones start, on parallel lanes.

    An all-ones start equals a zero start with the first four bytes inverted. The input is
    zero-padded at the front (which leaves a zero register unchanged), split into _LANES
    equal lanes, each lane's register computed in one vectorized pass, then lanes are
    merged pairwise: reg(A + B) = Z_len(B) reg(A) ^ reg(B).
    """
    lane_len = -(-len(data) // _LANES)
    buf = np.zeros(_LANES * lane_len, dtype=np.uint8)
    start = buf.size - len(data)
    buf[start:] = np.frombuffer(data, dtype=np.uint8)
    buf[start:start + 4] ^= 0xFF
    columns = np.ascontiguousarray(buf.reshape(_LANES, lane_len).T)
    regs = np.zeros(_LANES, dtype=np.uint32)
    for col in columns:
        regs = _TABLE_NP[(regs ^ col) & 0xFF] ^ (regs >> 8)
    span = lane_len
    while regs.size > 1:
        regs = _apply(_zeros_operator(span), regs[0::2]) ^ regs[1::2]
        span *= 2
    return int(regs[0])


def crc32c(data):
    """CRC-32C of a bytes-like object."""
    data = memoryview(data).cast('B')
    if len(data) <= _SCALAR_MAX:
        return _register_scalar(data, 0xFFFFFFFF) ^ 0xFFFFFFFF
    return _register_lanes(data) ^ 0xFFFFFFFF


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
