"""TensorFlow checkpoints (``tensor_bundle``) read and written with numpy alone.

A checkpoint ``PREFIX`` is two or more files. ``PREFIX.index`` is a LevelDB-format table: sorted keys in
prefix-compressed blocks (each with a CRC-32C trailer), a block index and a 48-byte footer. Its values are
``BundleEntryProto`` messages (dtype, shape, shard, offset, size, masked CRC-32C of the bytes), except
under the empty key, which holds the ``BundleHeaderProto`` (shards, byte order, version).
``PREFIX.data-0000K-of-0000N`` hold the tensors' raw bytes. Google's released BERTs, and every BERT
trained with Google's code, come in this format; reading it here means converting one needs no
TensorFlow, and every byte read is checked against the checksum TensorFlow wrote. Google's variable
names are mapped to ours in ``google_bert``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertforge.errors import CheckpointError, PathError
from bertforge.io.atomic import atomic_path

# --- CRC-32C (Castagnoli), as TensorFlow and LevelDB checksum blocks and tensors ----------------

_POLY = 0x82F63B78  # reflected Castagnoli polynomial
_MASK_DELTA = 0xA282EAD8
_BITS = np.arange(32, dtype=np.uint32)


def _byte_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_POLY), table >> 1).astype(np.uint32)
    return table


_TABLE = _byte_table()  # (256,) the CRC state after one byte, for each low byte of the state


def _half_word_tables() -> tuple[np.ndarray, np.ndarray]:
    """Four byte steps at once, as two lookups: the state's low and high 16 bits each pass through all
    four (tables[k] moves a byte through k + 1 steps); the results add (xor) by linearity."""
    tables = [_TABLE]
    for _ in range(3):
        tables.append((tables[-1] >> 8) ^ _TABLE[tables[-1] & 0xFF])
    x = np.arange(1 << 16, dtype=np.uint32)
    return tables[3][x & 0xFF] ^ tables[2][x >> 8], tables[1][x & 0xFF] ^ tables[0][x >> 8]


_LOW, _HIGH = _half_word_tables()  # (65536,) each


def _apply(operator: np.ndarray, states: np.ndarray) -> np.ndarray:
    """A GF(2)-linear map of 32-bit states, given as the images of its 32 unit vectors, applied to ``states``."""
    bits = ((states[..., None] >> _BITS) & 1).astype(bool)  # (..., 32)
    return np.bitwise_xor.reduce(np.where(bits, operator, np.uint32(0)), axis=-1).astype(np.uint32)


def _zeros_operator(n: int) -> np.ndarray:
    """The linear map "feed n zero bytes" on the CRC state (32 columns), by repeated squaring."""
    units = np.uint32(1) << _BITS
    step = (_TABLE[units & 0xFF] ^ (units >> 8)).astype(np.uint32)  # one zero byte
    result = units
    while n:
        if n & 1:
            result = _apply(step, result)
        step = _apply(step, step)
        n >>= 1
    return result


_SEGMENT = 1 << 22  # bytes per pass: the chunks' words stay in cache between steps


def crc32c(data: bytes | bytearray | memoryview | np.ndarray, crc: int = 0) -> int:
    """CRC-32C of ``data``, continuing from ``crc`` (TensorFlow's ``crc32c::Extend``; 0 starts afresh).

    The CRC is linear, so each 4 MiB segment is cut into equal chunks whose CRCs run side by side as
    numpy vectors, four bytes per step, and are then folded pairwise with the "append L zero bytes"
    map: a few seconds for BERT-base's 440 MB, where a byte-at-a-time Python loop would take minutes.
    """
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1).view(np.uint8)
    for start in range(0, buf.size, _SEGMENT):
        crc = _crc32c_segment(buf[start:start + _SEGMENT], crc)
    return crc


def _crc32c_segment(buf: np.ndarray, crc: int) -> int:
    n = buf.size
    chunk = max(64, min(1024, math.isqrt(n) // 4 * 4))
    padded = np.zeros((-n) % chunk + n, dtype=np.uint8)  # leading zeros leave a zero-started CRC unchanged
    padded[padded.size - n:] = buf
    words = padded.view("<u4").reshape(-1, chunk // 4)  # (chunks, words per chunk)
    state = np.zeros(words.shape[0], dtype=np.uint32)
    for j in range(words.shape[1]):  # step j: word j of every chunk
        state ^= words[:, j]
        state = _LOW[state & 0xFFFF] ^ _HIGH[state >> 16]
    operator = _zeros_operator(chunk)
    while state.size > 1:  # CRC(A + B) = zeros(len B)(CRC(A)) ^ CRC(B) for zero-started CRCs
        if state.size % 2:
            state = np.concatenate([np.zeros(1, dtype=np.uint32), state])
        state = _apply(operator, state[0::2]) ^ state[1::2]
        operator = _apply(operator, operator)
    start = _apply(_zeros_operator(n), np.array([crc ^ 0xFFFFFFFF], dtype=np.uint32))
    return int(start[0] ^ state[0]) ^ 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    """TensorFlow's masked CRC (what it stores), so that a CRC of data holding CRCs stays strong."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    rotated = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF


# --- protobuf wire format: the few messages a checkpoint index holds -----------------------------

def _varint(buf: bytes, pos: int, where: str) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointError(f"{where}: truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CheckpointError(f"{where}: varint longer than 10 bytes")


def _fields(buf: bytes, where: str) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of each field of a protobuf message: varints and fixed-width fields as
    unsigned ints, length-delimited fields as bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos, where)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, where)
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if pos + width > len(buf):
                raise CheckpointError(f"{where}: truncated field {number}")
            value, pos = int.from_bytes(buf[pos:pos + width], "little"), pos + width
        elif wire == 2:
            length, pos = _varint(buf, pos, where)
            if pos + length > len(buf):
                raise CheckpointError(f"{where}: field {number} runs past the end of the message")
            value, pos = bytes(buf[pos:pos + length]), pos + length
        else:
            raise CheckpointError(f"{where}: unsupported protobuf wire type {wire} (field {number})")
        yield number, value


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _put_varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 fields: negative numbers take ten bytes, as protobuf writes them
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _varint_field(number: int, value: int) -> bytes:
    return _put_varint(number << 3) + _put_varint(value) if value else b""  # proto3 leaves out zeros


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _put_varint(number << 3 | 2) + _put_varint(len(payload)) + payload


# --- LevelDB-format table (TensorFlow's lib/io/table) -------------------------------------------

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_BYTES = 48  # two block handles padded to 40 bytes, then the magic number
_BLOCK_BYTES = 262144  # TensorFlow's table::Options block_size
_RESTART_INTERVAL = 16


def _block_handle(buf: bytes, pos: int, where: str) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos, where)
    size, pos = _varint(buf, pos, where)
    return offset, size, pos


def _read_block(data: bytes, offset: int, size: int, path: Path) -> bytes:
    """A block's contents after checking its trailer (compression type, masked CRC-32C)."""
    end = offset + size
    if end + 5 > len(data):
        raise CheckpointError(f"{path}: truncated or damaged: a block at byte {offset} runs past the end of the "
                              f"file ({len(data)} bytes)")
    kind = data[end]
    stored = int.from_bytes(data[end + 1:end + 5], "little")
    if unmask_crc(stored) != crc32c(data[offset:end + 1]):
        raise CheckpointError(f"{path}: checksum mismatch in the block at byte {offset}: the index file is damaged")
    if kind != 0:
        name = {1: "snappy", 2: "zlib", 3: "zstd"}.get(kind, f"type {kind}")
        raise CheckpointError(f"{path}: the block at byte {offset} is {name}-compressed; bertforge reads "
                              "uncompressed tables only (TensorFlow writes checkpoint indexes uncompressed)")
    return data[offset:end]


def _block_entries(block: bytes, where: str) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs of a block: each entry stores the length of the prefix it shares with the
    key before it, then the rest of its key and its value; restart points (shared = 0) close the block."""
    if len(block) < 4:
        raise CheckpointError(f"{where}: block of {len(block)} bytes is too short")
    restarts = int.from_bytes(block[-4:], "little")
    end = len(block) - 4 * (restarts + 1)
    if end < 0:
        raise CheckpointError(f"{where}: block claims {restarts} restart points, more than fit")
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos, where)
        unshared, pos = _varint(block, pos, where)
        length, pos = _varint(block, pos, where)
        if shared > len(key) or pos + unshared + length > end:
            raise CheckpointError(f"{where}: malformed block entry at byte {pos}")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        yield key, block[pos:pos + length]
        pos += length


def read_table(path: str | os.PathLike) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of a LevelDB-format table file, in key order, each block's checksum verified."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < _FOOTER_BYTES:
        raise CheckpointError(f"{path}: {len(data)} bytes is too short for a checkpoint index (truncated?)")
    footer = data[-_FOOTER_BYTES:]
    if int.from_bytes(footer[-8:], "little") != _TABLE_MAGIC:
        raise CheckpointError(f"{path}: not a TensorFlow checkpoint index (bad magic number; truncated or "
                              "another format)")
    where = f"{path}: footer"
    _, _, pos = _block_handle(footer, 0, where)  # the metaindex block: empty in checkpoints
    index_offset, index_size, _ = _block_handle(footer, pos, where)
    rows: list[tuple[bytes, bytes]] = []
    for _, handle in _block_entries(_read_block(data, index_offset, index_size, path), f"{path}: index block"):
        offset, size, _ = _block_handle(handle, 0, f"{path}: index block")
        rows.extend(_block_entries(_read_block(data, offset, size, path), f"{path}: block at byte {offset}"))
    if any(a[0] >= b[0] for a, b in zip(rows, rows[1:])):
        raise CheckpointError(f"{path}: keys are not in increasing order: the index file is damaged")
    return rows


def _build_block(entries: list[tuple[bytes, bytes]], restart_interval: int) -> bytes:
    out, restarts, last = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_interval == 0:
            restarts.append(len(out))
        else:
            limit = min(len(last), len(key))
            while shared < limit and last[shared] == key[shared]:
                shared += 1
        out += _put_varint(shared) + _put_varint(len(key) - shared) + _put_varint(len(value))
        out += key[shared:] + value
        last = key
    for restart in restarts or [0]:
        out += restart.to_bytes(4, "little")
    out += len(restarts or [0]).to_bytes(4, "little")
    return bytes(out)


def write_table(path: str | os.PathLike, rows: list[tuple[bytes, bytes]]) -> None:
    """A LevelDB-format table of ``rows`` (sorted by key), uncompressed, as TensorFlow writes checkpoint
    indexes: data blocks of about 256 KiB, an empty metaindex block, an index block, the footer."""
    out = bytearray()

    def emit(block: bytes) -> bytes:
        handle = _put_varint(len(out)) + _put_varint(len(block))
        out.extend(block + b"\x00" + mask_crc(crc32c(block + b"\x00")).to_bytes(4, "little"))
        return handle

    index: list[tuple[bytes, bytes]] = []
    group: list[tuple[bytes, bytes]] = []
    size = 0
    for key, value in rows:
        group.append((key, value))
        size += len(key) + len(value) + 3
        if size >= _BLOCK_BYTES:
            index.append((key, emit(_build_block(group, _RESTART_INTERVAL))))  # the last key separates blocks
            group, size = [], 0
    if group:
        index.append((group[-1][0], emit(_build_block(group, _RESTART_INTERVAL))))
    footer = emit(_build_block([], _RESTART_INTERVAL)) + emit(_build_block(index, 1))
    out += footer + bytes(40 - len(footer)) + _TABLE_MAGIC.to_bytes(8, "little")
    Path(path).write_bytes(bytes(out))


# --- tensor_bundle: entries, reading, writing ---------------------------------------------------

# TensorFlow's DataType numbers (types.proto) with the numpy type of their bytes (little-endian).
DTYPES: dict[int, tuple[str, str | None]] = {
    1: ("float32", "<f4"), 2: ("float64", "<f8"), 3: ("int32", "<i4"), 4: ("uint8", "u1"), 5: ("int16", "<i2"),
    6: ("int8", "i1"), 7: ("string", None), 8: ("complex64", "<c8"), 9: ("int64", "<i8"), 10: ("bool", "?"),
    14: ("bfloat16", None), 17: ("uint16", "<u2"), 18: ("complex128", "<c16"), 19: ("float16", "<f2"),
    22: ("uint32", "<u4"), 23: ("uint64", "<u8"),
}
_CODES = {np.dtype(kind): code for code, (_, kind) in DTYPES.items() if kind is not None}
_BFLOAT16, _STRING = 14, 7


@dataclass(frozen=True)
class TensorEntry:
    """One tensor's ``BundleEntryProto``: where its bytes are and what they hold."""

    name: str
    dtype: int  # TensorFlow's DataType number (DTYPES)
    shape: tuple[int, ...]
    shard_id: int = 0
    offset: int = 0
    size: int = 0
    crc32c: int = 0  # masked, as stored
    sliced: bool = False  # a partitioned variable: its values live under other keys, in slices

    @property
    def dtype_name(self) -> str:
        return DTYPES.get(self.dtype, (f"DataType {self.dtype}", None))[0]


def _parse_shape(buf: bytes, where: str) -> tuple[int, ...]:
    dims = []
    for number, value in _fields(buf, where):
        if number == 2:  # Dim {size = 1; name = 2}
            dims.append(next((_signed(v) for n, v in _fields(value, where) if n == 1), 0))
        elif number == 3 and value:
            raise CheckpointError(f"{where}: shape of unknown rank")
    return tuple(dims)


def _parse_entry(name: str, value: bytes, where: str) -> TensorEntry:
    fields: dict[str, Any] = {}
    for number, data in _fields(value, where):
        if number == 1:
            fields["dtype"] = data
        elif number == 2:
            fields["shape"] = _parse_shape(data, where)
        elif number in (3, 4, 5):
            fields[("shard_id", "offset", "size")[number - 3]] = _signed(data)
        elif number == 6:
            fields["crc32c"] = data
        elif number == 7:
            fields["sliced"] = True
    if "dtype" not in fields:
        raise CheckpointError(f"{where}: entry for {name!r} has no dtype")
    return TensorEntry(name=name, shape=fields.pop("shape", ()), **fields)


def _encode_entry(dtype: int, shape: tuple[int, ...], offset: int, size: int, crc: int) -> bytes:
    shape_proto = b"".join(_bytes_field(2, _varint_field(1, d)) for d in shape)
    return (_varint_field(1, dtype) + _bytes_field(2, shape_proto) + _varint_field(4, offset)
            + _varint_field(5, size) + b"\x35" + mask_crc(crc).to_bytes(4, "little"))  # 0x35: field 6, fixed32


def checkpoint_prefix(path: str | os.PathLike, flag: str | None = None) -> Path:
    """The prefix of a checkpoint named by its prefix, its ``.index`` or a data file, or by the directory
    holding exactly one checkpoint (Google's released folders hold ``bert_model.ckpt``)."""
    path = Path(path)
    if path.is_dir():
        indexes = sorted(path.glob("*.index"))
        if len(indexes) != 1:
            found = f"{len(indexes)} checkpoints ({', '.join(p.name for p in indexes[:4])})" if indexes else "none"
            raise PathError(f"is a directory; expected one TensorFlow checkpoint in it, found {found}", path=path,
                            flag=flag, hint="pass the checkpoint's prefix, e.g. DIR/bert_model.ckpt")
        return indexes[0].with_suffix("")
    name = re.sub(r"\.(index|data-\d{5}-of-\d{5})$", "", path.name)
    prefix = path.with_name(name)
    index = prefix.with_name(name + ".index")
    if not index.is_file():
        raise PathError(f"no such TensorFlow checkpoint ({index.name} is missing)", path=prefix, flag=flag,
                        hint="a checkpoint PREFIX is PREFIX.index with PREFIX.data-00000-of-00001")
    return prefix


class TFCheckpoint:
    """A TensorFlow checkpoint opened for reading: names, dtypes and shapes from its index; each tensor's
    values on demand, with their checksum verified."""

    def __init__(self, prefix: str | os.PathLike):
        self.prefix = checkpoint_prefix(prefix)
        self.index_path = self.prefix.with_name(self.prefix.name + ".index")
        rows = read_table(self.index_path)
        if not rows or rows[0][0] != b"":
            raise CheckpointError(f"{self.index_path}: no header entry (the empty key): not a tensor bundle")
        self.num_shards, self.big_endian = 1, False
        for number, value in _fields(rows[0][1], f"{self.index_path}: header"):
            if number == 1:
                self.num_shards = value
            elif number == 2:
                self.big_endian = value == 1
            elif number == 3:
                version = {n: v for n, v in _fields(value, f"{self.index_path}: header version")}
                if version.get(2, 0) > 1:  # min_consumer: the oldest reader that understands it
                    raise CheckpointError(f"{self.index_path}: written by a newer TensorFlow for readers of "
                                          f"format version >= {version[2]}; this reader knows version 1")
        self.entries: dict[str, TensorEntry] = {}
        for key, value in rows[1:]:
            if key.startswith(b"\x00"):  # the slices of a partitioned variable, listed under its own name
                continue
            name = key.decode("utf-8", errors="backslashreplace")
            self.entries[name] = _parse_entry(name, value, f"{self.index_path}: entry {name!r}")

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: entry.shape for name, entry in self.entries.items()}

    def data_path(self, shard: int) -> Path:
        return self.prefix.with_name(f"{self.prefix.name}.data-{shard:05d}-of-{self.num_shards:05d}")

    def read(self, name: str) -> np.ndarray:
        """The tensor ``name`` (bfloat16 widened to float32; strings as an object array of bytes)."""
        if name not in self.entries:
            raise CheckpointError(f"{self.index_path}: no tensor named {name!r}")
        entry = self.entries[name]
        if entry.sliced:
            raise CheckpointError(f"{self.index_path}: {name!r} is a partitioned variable stored in slices; "
                                  "bertforge reads whole tensors only")
        if entry.dtype not in DTYPES:
            raise CheckpointError(f"{self.index_path}: {name!r} has TensorFlow dtype {entry.dtype}, which "
                                  "bertforge does not read")
        path = self.data_path(entry.shard_id)
        if not path.is_file():
            raise PathError(f"missing data file of checkpoint {self.prefix.name} (holds {name!r})", path=path)
        with open(path, "rb") as f:
            f.seek(entry.offset)
            raw = f.read(entry.size)
        if len(raw) < entry.size:
            raise CheckpointError(f"{path}: truncated: tensor {name!r} needs bytes {entry.offset}.."
                                  f"{entry.offset + entry.size} but the file has {path.stat().st_size} bytes")
        if entry.dtype == _STRING:
            return self._strings(entry, raw, path)
        if unmask_crc(entry.crc32c) != crc32c(raw):
            raise CheckpointError(f"{path}: checksum mismatch for tensor {name!r} (bytes {entry.offset}.."
                                  f"{entry.offset + entry.size}): the file is damaged")
        count = math.prod(entry.shape)
        kind = np.dtype("<u2" if entry.dtype == _BFLOAT16 else DTYPES[entry.dtype][1])
        if self.big_endian:
            kind = kind.newbyteorder(">")
        if count * kind.itemsize != entry.size:
            raise CheckpointError(f"{self.index_path}: {name!r} is {entry.size} bytes but a {entry.dtype_name} "
                                  f"tensor of shape {list(entry.shape)} takes {count * kind.itemsize}")
        array = np.frombuffer(raw, dtype=kind).reshape(entry.shape)
        if entry.dtype == _BFLOAT16:  # numpy has no bfloat16: its bits are the top half of a float32
            return (array.astype(np.uint32) << 16).view(np.float32)
        return array.astype(kind.newbyteorder("="))

    def _strings(self, entry: TensorEntry, raw: bytes, path: Path) -> np.ndarray:
        """A string tensor: varint lengths, a masked CRC of the lengths, then the bytes. Its checksum
        covers the lengths as 4-byte integers, the length CRC and the bytes (TensorFlow's layout)."""
        if self.big_endian:
            raise CheckpointError(f"{path}: big-endian string tensors are not supported ({entry.name!r})")
        where, count = f"{path}: string tensor {entry.name!r}", math.prod(entry.shape)
        lengths, pos, crc = [], 0, 0
        for _ in range(count):
            length, pos = _varint(raw, pos, where)
            lengths.append(length)
            crc = crc32c(length.to_bytes(4 if length <= 0xFFFFFFFF else 8, "little"), crc)
        if pos + 4 > len(raw) or unmask_crc(int.from_bytes(raw[pos:pos + 4], "little")) != crc:
            raise CheckpointError(f"{where}: checksum mismatch in the string lengths: the file is damaged")
        crc = crc32c(raw[pos:pos + 4], crc)
        pos += 4
        values = np.empty(count, dtype=object)
        for i, length in enumerate(lengths):
            values[i] = raw[pos:pos + length]
            pos += length
        if pos != len(raw) or crc32c(raw[pos - sum(lengths):pos], crc) != unmask_crc(entry.crc32c):
            raise CheckpointError(f"{where}: checksum mismatch: the file is damaged")
        return values.reshape(entry.shape)


def read_tf_checkpoint(prefix: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of a checkpoint by name, checksums verified."""
    checkpoint = TFCheckpoint(prefix)
    return {name: checkpoint.read(name) for name in checkpoint}


def write_tf_checkpoint(prefix: str | os.PathLike, tensors: Mapping[str, np.ndarray]) -> list[Path]:
    """Write ``tensors`` as a one-shard checkpoint TensorFlow reads (``tf.train.load_checkpoint``,
    ``Saver.restore``): the data file first, then the index, each atomically. Returns the two paths."""
    prefix = Path(prefix)
    data_path = prefix.with_name(f"{prefix.name}.data-00000-of-00001")
    index_path = prefix.with_name(f"{prefix.name}.index")
    rows = [(b"", _varint_field(1, 1) + _bytes_field(3, _varint_field(1, 1)))]  # 1 shard, little-endian, v1
    with atomic_path(data_path) as tmp, open(tmp, "wb") as f:
        offset = 0
        for name in sorted(tensors, key=lambda n: n.encode("utf-8")):
            array = np.asarray(tensors[name])
            if not name or name.startswith("\x00"):
                raise CheckpointError(f"tensor name {name!r} is reserved in a checkpoint")
            if array.dtype.newbyteorder("=") not in _CODES:
                raise CheckpointError(f"tensor {name!r} has dtype {array.dtype}, which a checkpoint cannot hold here")
            raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            f.write(raw)
            code = _CODES[array.dtype.newbyteorder("=")]
            rows.append((name.encode("utf-8"), _encode_entry(code, array.shape, offset, len(raw), crc32c(raw))))
            offset += len(raw)
    try:
        with atomic_path(index_path) as tmp:
            write_table(tmp, rows)
    except BaseException:
        data_path.unlink(missing_ok=True)
        raise
    return [index_path, data_path]
