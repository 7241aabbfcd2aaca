"""Atomic file writes: a uniquely named temp file in the target's folder, then ``os.replace``.

The temp name is unique per call (``mkstemp``), so several processes (DDP ranks) may write the
same file at once: each rename is atomic, readers see one whole version, and no rank's rename
can find its temp file taken by another's. The temp name is ``.<name>-<random>`` without the
target's suffix, so a temp left by a killed process never matches a ``*.safetensors`` glob.
``mkstemp`` creates its file readable by its owner only; the renamed file gets the mode that
a plain ``open`` would have given it (0666 less the user's umask).

``refuse_overwrite`` guards every command that reads one file and writes another.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import ProbesError


def _umask() -> int:
    # The only portable way to read the umask is to set it; set it straight back.
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temp path to write; renamed onto ``path`` when the block succeeds, removed if not."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if Path(tmp).is_file():
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_lines(path: str | Path, lines: Iterable[str]) -> Path:
    """Write text lines (each ended by a newline) to ``path``; a failure leaves it untouched."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` as one atomic replacement."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def refuse_overwrite(output: str | Path, *inputs: str | Path, option: str = "--output") -> None:
    """Raise when ``output`` is (or resolves, through links, to) one of ``inputs``."""
    out = Path(output)
    for source in inputs:
        src = Path(source)
        same = out.resolve() == src.resolve()
        if not same and out.exists() and src.exists():
            same = os.path.samefile(out, src)
        if same:
            raise ProbesError(
                f"option {option!r}: {output} is the input {source}; writing it would destroy "
                "the input. Choose another output path"
            )
