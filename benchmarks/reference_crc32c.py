"""CRC-32C in NumPy: the reader's own implementation before it used google-crc32c, kept as the reference that
benchmarks/run.py times the library against (a table loop for short inputs, 4096 parallel lanes merged with GF(2)
zero-byte operators for long ones)."""
import numpy as np

_POLY = 0x82F63B78  # CRC-32C (Castagnoli), bit-reflected
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


def crc32c(data):
    """CRC-32C of a bytes-like object."""
    data = memoryview(data).cast('B')
    if len(data) <= _SCALAR_MAX:
        return _register_scalar(data, 0xFFFFFFFF) ^ 0xFFFFFFFF
    return _register_lanes(data) ^ 0xFFFFFFFF
