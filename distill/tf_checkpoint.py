"""TensorFlow checkpoints (the V2 "tensor bundle" format) read and written without TensorFlow.

A checkpoint with prefix ``P`` is ``P.index`` plus data shards ``P.data-00000-of-0000N``:

- ``P.index`` is a LevelDB-format table (TF's ``core/lib/io/table``), keys sorted. Key ``""`` holds a
  ``BundleHeaderProto`` (1 num_shards, 2 endianness); every other key is a variable name whose value is a
  ``BundleEntryProto`` (1 dtype, 2 shape, 3 shard_id, 4 offset, 5 size, 6 masked crc32c of the bytes,
  7 slices). The table: data blocks, an empty metaindex block, an index block (one entry per data block,
  value = its BlockHandle), and a 48-byte footer (two varint BlockHandles padded to 40 bytes, then the
  magic 0xdb4775248b80fb57). A block is prefix-compressed entries ``varint shared, varint non_shared,
  varint value_len, key_delta, value``, then a fixed32 restart array and its length, followed on disk by a
  5-byte trailer: compression type (TF's bundle writer uses none) and the masked crc32c of block + type.
- A data shard is the tensors' raw little-endian bytes at the entries' offsets.

Written by hand because no maintained package reads this format without TensorFlow (1.3 GB installed);
TensorFlow cross-checks it in ``tests/test_tf_checkpoint.py`` and through a committed checkpoint that
real TensorFlow wrote. Protobuf messages are decoded from the wire format directly: the two messages
have seven scalar fields between them, not worth a protobuf dependency and generated code.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import numpy as np

from distill.errors import ConfigError

MAGIC = 0xDB4775248B80FB57
FOOTER_LEN = 48
TRAILER_LEN = 5
MASK_DELTA = 0xA282EAD8
RESTART_INTERVAL = 16
BLOCK_SIZE = 256 * 1024  # TF's table default

# DataType enum values (tensorflow/core/framework/types.proto) -> numpy dtype
DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?", 14: "bfloat16", 19: "<f2"}
DTYPE_CODES = {np.dtype(v): k for k, v in DTYPES.items() if v != "bfloat16"}


class CheckpointError(ConfigError):
    """A TensorFlow checkpoint that cannot be read (missing, truncated, corrupt, unsupported)."""


def masked_crc32c(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + MASK_DELTA) & 0xFFFFFFFF


# --- protobuf wire format -------------------------------------------------------------------------

def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("varint runs past the end")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _put_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of a protobuf message: varints as ints, length-delimited as bytes,
    fixed32/64 as ints."""
    out, pos = [], 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        else:
            raise ValueError(f"wire type {wire}")
        out.append((number, value))
    return out


def _field(number: int, value: int | bytes, fixed32: bool = False) -> bytes:
    if fixed32:
        return _put_varint(number << 3 | 5) + struct.pack("<I", value)
    if isinstance(value, bytes):
        return _put_varint(number << 3 | 2) + _put_varint(len(value)) + value
    return _put_varint(number << 3) + _put_varint(value)


@dataclass(frozen=True)
class Entry:
    """One variable's BundleEntryProto."""

    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int | None  # masked, as stored
    sliced: bool

    @classmethod
    def decode(cls, buf: bytes) -> "Entry":
        values = dict(dtype=0, shape=(), shard=0, offset=0, size=0, crc32c=None, sliced=False)
        for number, value in _fields(buf):
            if number == 1:
                values["dtype"] = value
            elif number == 2:
                values["shape"] = tuple(
                    dict(_fields(dim)).get(1, 0) for n, dim in _fields(value) if n == 2
                )
            elif number in (3, 4, 5):
                values[("shard", "offset", "size")[number - 3]] = value
            elif number == 6:
                values["crc32c"] = value
            elif number == 7:
                values["sliced"] = True
        return cls(**values)

    def encode(self) -> bytes:
        dims = b"".join(_field(2, _field(1, d) if d else b"") for d in self.shape)
        out = _field(1, self.dtype) + _field(2, dims)
        for number, value in ((3, self.shard), (4, self.offset), (5, self.size)):
            if value:  # proto3 leaves zero scalars out
                out += _field(number, value)
        return out + _field(6, self.crc32c, fixed32=True)


# --- the LevelDB table ----------------------------------------------------------------------------

def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * num_restarts
    out, key, pos = [], b"", 0
    while pos < end:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        out.append((key, block[pos : pos + value_len]))
        pos += value_len
    return out


def _read_block(data: bytes, handle: bytes, where: str) -> bytes:
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    if offset + size + TRAILER_LEN > len(data):
        raise CheckpointError(f"{where} is truncated (a block ends at byte {offset + size + TRAILER_LEN} of {len(data)})")
    block = data[offset : offset + size]
    kind, crc = struct.unpack_from("<BI", data, offset + size)
    if kind != 0:
        raise CheckpointError(f"{where} uses block compression {kind}; only uncompressed tables (what TF writes) are read")
    if masked_crc32c(block + bytes([kind])) != crc:
        raise CheckpointError(f"{where} is corrupt (block checksum mismatch at byte {offset})")
    return block


def read_table(path: Path) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of a LevelDB-format table file, in order."""
    data = path.read_bytes()
    if len(data) < FOOTER_LEN or struct.unpack_from("<Q", data, len(data) - 8)[0] != MAGIC:
        raise CheckpointError(f"{path} is not a TensorFlow V2 checkpoint index (no table footer); "
                              "give the .index file of a checkpoint written by tf.train.Saver or tf.train.Checkpoint")
    footer = data[-FOOTER_LEN:]
    _, pos = _varint(footer, _varint(footer, 0)[1])  # skip the metaindex handle
    index_handle = footer[pos:]
    out = []
    for _, handle in _block_entries(_read_block(data, index_handle, str(path))):
        out += _block_entries(_read_block(data, handle, str(path)))
    return out


class _BlockBuilder:
    def __init__(self, restart_interval: int):
        self.buf, self.restarts, self.count, self.last = bytearray(), [0], 0, b""
        self.interval = restart_interval

    def add(self, key: bytes, value: bytes) -> None:
        shared = 0
        if self.count < self.interval:
            while shared < min(len(key), len(self.last)) and key[shared] == self.last[shared]:
                shared += 1
        else:
            self.restarts.append(len(self.buf))
            self.count = 0
        self.buf += _put_varint(shared) + _put_varint(len(key) - shared) + _put_varint(len(value))
        self.buf += key[shared:] + value
        self.last, self.count = key, self.count + 1

    def finish(self) -> bytes:
        return bytes(self.buf) + b"".join(struct.pack("<I", r) for r in self.restarts) + struct.pack("<I", len(self.restarts))


def write_table(path: Path, items: list[tuple[bytes, bytes]]) -> None:
    """A LevelDB-format table of sorted ``items``, uncompressed, as TF's table builder lays it out."""
    out, index = bytearray(), _BlockBuilder(1)

    def emit(block: bytes) -> bytes:
        handle = _put_varint(len(out)) + _put_varint(len(block))
        out.extend(block + bytes([0]) + struct.pack("<I", masked_crc32c(block + bytes([0]))))
        return handle

    block = _BlockBuilder(RESTART_INTERVAL)
    for key, value in items:
        block.add(key, value)
        if len(block.buf) >= BLOCK_SIZE:
            index.add(key, emit(block.finish()))
            block = _BlockBuilder(RESTART_INTERVAL)
    if block.count or not index.count:
        index.add(items[-1][0] if items else b"", emit(block.finish()))
    metaindex = emit(_BlockBuilder(RESTART_INTERVAL).finish())
    index_handle = emit(index.finish())
    footer = (metaindex + index_handle).ljust(FOOTER_LEN - 8, b"\0") + struct.pack("<Q", MAGIC)
    path.write_bytes(bytes(out) + footer)


# --- checkpoints ----------------------------------------------------------------------------------

def find_prefix(path: str | Path) -> Path:
    """The checkpoint prefix in a directory (its ``checkpoint`` file, else the one ``*.index``), or a prefix
    or ``.index`` file given directly."""
    path = Path(path)
    if path.suffix == ".index" and path.is_file():
        return path.with_suffix("")
    if Path(f"{path}.index").is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"{path} is neither a checkpoint directory nor a checkpoint prefix (no {path.name}.index)")
    state = path / "checkpoint"
    if state.is_file():
        match = re.search(r'^model_checkpoint_path:\s*"([^"]+)"', state.read_text(), re.M)
        if match and Path(f"{path / match.group(1)}.index").is_file():
            return path / match.group(1)
    indexes = sorted(path.glob("*.index"))
    if len(indexes) != 1:
        found = ", ".join(p.name for p in indexes) or "none"
        raise CheckpointError(f"{path} must hold exactly one checkpoint (*.index files: {found}); "
                              "give the prefix itself, e.g. <dir>/model.ckpt-1000")
    return indexes[0].with_suffix("")


class Checkpoint:
    """A V2 checkpoint: ``entries`` (name -> Entry) read from the index; ``read(name)`` one tensor."""

    def __init__(self, path: str | Path):
        self.prefix = find_prefix(path)
        items = read_table(Path(f"{self.prefix}.index"))
        if not items or items[0][0] != b"":
            raise CheckpointError(f"{self.prefix}.index has no bundle header; it is not a tensor bundle")
        header = dict(_fields(items[0][1]))
        self.num_shards = header.get(1, 1)
        if header.get(2, 0) != 0:
            raise CheckpointError(f"{self.prefix}.index was written big-endian; only little-endian checkpoints are read")
        self.entries = {key.decode(): Entry.decode(value) for key, value in items[1:]}
        for shard in range(self.num_shards):
            if not self._shard(shard).is_file():
                raise CheckpointError(f"{self._shard(shard)} is missing; copy every .data-* file next to the .index")

    def _shard(self, shard: int) -> Path:
        return Path(f"{self.prefix}.data-{shard:05d}-of-{self.num_shards:05d}")

    def read(self, name: str) -> np.ndarray:
        entry = self.entries[name]
        if entry.sliced or entry.dtype not in DTYPES:
            raise CheckpointError(f"{self.prefix}: variable {name} is {'partitioned' if entry.sliced else f'of dtype {entry.dtype}'}, "
                                  "which this reader does not handle; re-save the checkpoint unpartitioned in float32")
        shard = self._shard(entry.shard)
        with shard.open("rb") as f:
            f.seek(entry.offset)
            raw = f.read(entry.size)
        if len(raw) != entry.size:
            raise CheckpointError(f"{shard} is truncated: variable {name} needs bytes {entry.offset}-{entry.offset + entry.size} "
                                  f"but the file has {shard.stat().st_size}; copy the checkpoint again")
        if entry.crc32c is not None and masked_crc32c(raw) != entry.crc32c:
            raise CheckpointError(f"{shard} is corrupt: variable {name} fails its checksum; copy the checkpoint again")
        if DTYPES[entry.dtype] == "bfloat16":  # the top half of a float32
            return (np.frombuffer(raw, "<u2").astype("<u4") << 16).view("<f4").reshape(entry.shape)
        return np.frombuffer(raw, DTYPES[entry.dtype]).reshape(entry.shape).copy()


def write_checkpoint(prefix: str | Path, tensors: dict[str, np.ndarray]) -> None:
    """Write ``tensors`` as a one-shard V2 checkpoint at ``prefix`` (plus a ``checkpoint`` state file), laid
    out as TF's BundleWriter does, so TensorFlow reads it too. For tests and hand-made fixtures."""
    prefix = Path(prefix)
    data, items, offset = bytearray(), [], 0
    for name in sorted(tensors):
        array = np.array(tensors[name], order="C")  # ascontiguousarray would make a scalar 1-d
        array = array.astype(array.dtype.newbyteorder("<"))
        raw = array.tobytes()
        entry = Entry(DTYPE_CODES[array.dtype], tuple(array.shape), 0, offset, len(raw), masked_crc32c(raw), False)
        items.append((name.encode(), entry.encode()))
        data += raw
        offset += len(raw)
    version = _field(1, 1)  # VersionDef.producer = kTensorBundleVersion
    header = _field(1, 1) + _field(3, version)  # num_shards = 1, endianness LITTLE (0, omitted)
    write_table(Path(f"{prefix}.index"), [(b"", header)] + items)
    Path(f"{prefix}.data-00000-of-00001").write_bytes(bytes(data))
    (prefix.parent / "checkpoint").write_text(
        f'model_checkpoint_path: "{prefix.name}"\nall_model_checkpoint_paths: "{prefix.name}"\n'
    )
