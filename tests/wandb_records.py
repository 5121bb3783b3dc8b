"""Read a W&B offline run's record file (`run-<id>.wandb`): what `wandb sync` would upload.

The file is W&B's LevelDB-style log: a 7-byte header (":W&B", magic 0xBEE1, version 0), then 32 KiB
blocks of chunks, each a 7-byte header (CRC32, length, type: 1 full, 2 first, 3 middle, 4 last) and
its bytes; the chunks of a record join into one `wandb_internal_pb2.Record` protobuf.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
HEADER = struct.Struct("<4sHB")
CHUNK = struct.Struct("<IHB")


def records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    assert HEADER.unpack_from(data) == (b":W&B", 0xBEE1, 0), "not a W&B record file"
    found, pending, position = [], b"", HEADER.size
    while position + CHUNK.size <= len(data):
        left = BLOCK - position % BLOCK
        if left < CHUNK.size:  # a block's tail too short for a chunk header is padding
            position += left
            continue
        _, length, kind = CHUNK.unpack_from(data, position)
        if kind == 0:  # zero padding up to the block's end
            position += left
            continue
        pending += data[position + CHUNK.size:position + CHUNK.size + length]
        position += CHUNK.size + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            found.append(record)
            pending = b""
    return found


def run_group_and_summary(path: Path) -> tuple[str, dict]:
    """The run's group and its final summary (each key's last value, keys as W&B shows them)."""
    group, summary = "", {}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            group = record.run.run_group
        elif kind == "summary":
            for item in record.summary.update:
                key = item.key or "/".join(item.nested_key)
                summary[key] = json.loads(item.value_json)
    return group, summary
