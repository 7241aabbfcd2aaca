"""Read the summary of an offline W&B run from its ``run-*.wandb`` file (for tests).

The file is a 7-byte header then LevelDB-style log blocks of 32 KiB; each record is a
``wandb_internal_pb2.Record``. Only what the tests need: the last value of each summary key.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

HEADER, BLOCK = 7, 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path):
    data = Path(path).read_bytes()
    pos, pending = HEADER, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == FULL:
            yield _parse(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield _parse(pending + chunk)


def _parse(raw: bytes):
    record = pb.Record()
    record.ParseFromString(raw)
    return record


def offline_summary(run_dir: Path) -> dict:
    """``{key: value}`` of the run's summary updates, last write wins."""
    return _last_values(run_dir, "summary", lambda r: r.summary.update)


def offline_history(run_dir: Path) -> dict:
    """``{key: value}`` of the run's logged rows (``run.log``), last write wins; a table
    ``t`` appears as ``t/_type``, ``t/nrows``..."""
    return _last_values(run_dir, "history", lambda r: r.history.item)


def _last_values(run_dir: Path, kind: str, items) -> dict:
    """The last value of every key in the run's records of type ``kind``."""
    (path,) = Path(run_dir).glob("run-*.wandb")
    values = {}
    for record in records(path):
        if record.WhichOneof("record_type") == kind:
            for item in items(record):
                values[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return values


def offline_artifacts(run_dir: Path) -> list[dict]:
    """Every artifact the run logged: ``name``, ``type``, ``aliases``, ``metadata``."""
    (path,) = Path(run_dir).glob("run-*.wandb")
    out = []
    for record in records(path):
        if record.WhichOneof("record_type") == "artifact":
            a = record.artifact
            out.append(
                {
                    "name": a.name,
                    "type": a.type,
                    "aliases": list(a.aliases),
                    "metadata": json.loads(a.metadata) if a.metadata else {},
                }
            )
    return out


def offline_table(run_dir: Path, key: str) -> dict:
    """The logged table ``key``: ``{"columns": [...], "data": [[...], ...]}``."""
    path = offline_history(run_dir)[f"{key}/path"]
    return json.loads((Path(run_dir) / "files" / path).read_text())
