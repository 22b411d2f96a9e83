"""Reader for the IDX format of MNIST and Fashion-MNIST (plain or gzip-compressed).

The header is validated before any data is trusted: magic number, element type,
dimensions and the exact payload length, so a truncated, padded or corrupted file is
rejected with a clear error instead of silently producing wrong arrays, and a header
that claims an absurd size is refused before anything is allocated.
"""

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np

from .errors import ChecksumError, DataError

# IDX type byte -> numpy dtype (big-endian, as the format stores it).
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# Largest payload we accept; above it the header is assumed corrupt (MNIST is 47 MB).
MAX_PAYLOAD_BYTES = 4 * 1024**3


def read_bytes(path):
    """Return the uncompressed content of an IDX file, gunzipping when it ends in .gz."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return _read_limited(fh, path)
        with open(path, "rb") as fh:
            return _read_limited(fh, path)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check the path or the data directory") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot be read ({exc}); replace it with an intact copy") from None


def _read_limited(fh, path):
    """The file's bytes, never more than its header declares: a gzip bomb, or a file padded past
    its data, is stopped after one byte too many instead of being inflated whole."""
    head = fh.read(4)
    if len(head) == 4 and head[:2] == b"\0\0" and head[2] in _IDX_DTYPES and head[3] > 0:
        head += fh.read(4 * head[3])
    declared = _declared_length(head, path)
    if declared is None:  # not an IDX header: parse_idx says what is wrong with it
        return head
    data = head + fh.read(declared - len(head) + 1)
    if len(data) > declared:
        raise DataError(f"{path}: holds more than the {declared:,} bytes its IDX header declares (a damaged file or "
                        "a decompression bomb); replace it with an intact copy")
    return data


def _declared_length(head, source):
    """Header plus payload length declared by a complete IDX header `head`; None when `head` is not one."""
    if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in _IDX_DTYPES or head[3] == 0 or len(head) < 4 + 4 * head[3]:
        return None
    ndim = head[3]
    shape = tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    payload = _IDX_DTYPES[head[2]].itemsize
    for dim in shape:
        payload *= dim
        if payload > MAX_PAYLOAD_BYTES:
            raise DataError(f"{source}: header declares shape {shape}, too large to be real; the file is corrupted")
    return 4 + 4 * ndim + payload


def parse_idx(data, source="<bytes>"):
    """Decode IDX bytes into a numpy array of the shape the header declares.

    Parameters
    ----------
    data : bytes
        The uncompressed file content.
    source : str
        Name used in error messages.
    """
    if len(data) < 4:
        raise DataError(f"{source}: only {len(data)} bytes, too short for an IDX header; the file is truncated")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{source}: bad magic number {data[:4].hex()} (must start with 0000); not an IDX file")
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPES:
        raise DataError(f"{source}: unknown IDX element type 0x{type_code:02x}; the file is corrupted")
    if ndim == 0:
        raise DataError(f"{source}: IDX header declares 0 dimensions; the file is corrupted")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(f"{source}: truncated inside the header ({len(data)} of {header_len} bytes)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[type_code]
    expected = dtype.itemsize
    for dim in shape:
        expected *= dim
        if expected > MAX_PAYLOAD_BYTES:
            raise DataError(f"{source}: header declares shape {shape}, too large to be real; the file is corrupted")
    actual = len(data) - header_len
    if actual < expected:
        raise DataError(f"{source}: truncated: header declares shape {shape} ({expected} bytes) but only {actual} follow")
    if actual > expected:
        raise DataError(f"{source}: {actual - expected} unexpected bytes after the data of shape {shape}; the file is corrupted")
    return np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path, md5=None, sha256=None):
    """Read an IDX file, verifying the checksum of its *uncompressed* content when given.

    Checksums are taken on the payload, not the .gz wrapper, because mirrors and
    distributions re-compress the same data with different gzip settings.
    """
    data = read_bytes(path)
    for name, expected in (("md5", md5), ("sha256", sha256)):
        if expected is not None:
            actual = hashlib.new(name, data).hexdigest()
            if actual != expected:
                raise ChecksumError(
                    f"{path}: {name} of the uncompressed content is {actual}, expected {expected}; "
                    "the file is corrupted or not the original, replace it"
                )
    return parse_idx(data, source=str(path))
