import gzip
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from encluster.errors import ChecksumError, DataError
from encluster.idx import parse_idx, read_idx


def idx_bytes(array):
    """Encode a uint8 array in the IDX format, as the original files are written."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


@given(st.lists(st.integers(1, 6), min_size=1, max_size=3), st.integers(0, 2**32 - 1))
def test_roundtrip_any_shape(shape, seed):
    array = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    assert np.array_equal(parse_idx(idx_bytes(array)), array)


def test_big_endian_types_are_decoded():
    values = np.array([1, -2, 70000], dtype=">i4")
    data = bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 3) + values.tobytes()
    assert parse_idx(data).tolist() == [1, -2, 70000]


@pytest.mark.parametrize("data, fragment", [
    (b"", "too short"),
    (bytes([1, 0, 8, 1]) + struct.pack(">I", 1) + b"\0", "magic"),
    (bytes([0, 0, 0x42, 1]) + struct.pack(">I", 1) + b"\0", "element type"),
    (bytes([0, 0, 8, 0]), "0 dimensions"),
    (bytes([0, 0, 8, 3]) + struct.pack(">I", 2), "truncated inside the header"),
    (bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\0" * 9, "truncated"),
    (bytes([0, 0, 8, 1]) + struct.pack(">I", 2) + b"\0" * 3, "unexpected bytes"),
])
def test_malformed_headers_are_rejected(data, fragment):
    with pytest.raises(DataError, match=fragment):
        parse_idx(data)


def test_absurd_header_is_refused_before_allocating():
    # 4 dims of 2^32-1 claims ~3e38 bytes: must fail fast, not try to allocate.
    data = bytes([0, 0, 8, 4]) + struct.pack(">IIII", *([2**32 - 1] * 4))
    with pytest.raises(DataError, match="too large"):
        parse_idx(data)


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_random_bytes_parse_or_raise_data_error(data):
    try:
        result = parse_idx(data)
    except DataError:
        return
    assert isinstance(result, np.ndarray)


@settings(max_examples=200)
@given(st.integers(0, 40), st.integers(0, 255))
def test_mutated_real_file_parses_exactly_or_raises(position, value):
    """One byte of a 2x3x4 file changed: in the 16-byte header it is refused (or, when it names the
    same thing, parsed as before); in the data, that one pixel changes and nothing else."""
    original = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    data = bytearray(idx_bytes(original))
    at = position % len(data)
    unchanged = data[at] == value
    data[at] = value
    if at >= 16:
        expected = original.copy().ravel()
        expected[at - 16] = value
        assert np.array_equal(parse_idx(bytes(data)), expected.reshape(2, 3, 4))
    elif unchanged:
        assert np.array_equal(parse_idx(bytes(data)), original)
    elif at == 2 and value == 0x09:  # int8: the same bytes, all below 128, read as another valid type
        assert np.array_equal(parse_idx(bytes(data)), original.astype(np.int8))
    else:
        with pytest.raises(DataError):
            parse_idx(bytes(data))


def test_gzip_file_and_checksum(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = tmp_path / "a-idx2-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(array)))
    import hashlib

    md5 = hashlib.md5(idx_bytes(array)).hexdigest()
    assert np.array_equal(read_idx(path, md5=md5), array)
    with pytest.raises(ChecksumError, match="md5"):
        read_idx(path, md5="0" * 32)


def test_truncated_gzip_is_rejected(tmp_path):
    payload = gzip.compress(idx_bytes(np.zeros((50, 50), dtype=np.uint8)))
    path = tmp_path / "cut.gz"
    path.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(DataError, match="cannot be read"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_idx(tmp_path / "nope.gz")
