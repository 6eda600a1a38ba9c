"""Writing a run's files so that a full disk or a read-only folder gives one clear error.

Every file a run writes (checkpoints, ``metrics.csv``, ``results.json``, plots) goes through
:func:`write_atomically` or :func:`writing`, which turn an ``OSError`` into a
:class:`WriteError` naming the file and the reason (``no space left on device``,
``permission denied``, ``read-only file system``). A file replaced atomically keeps its
previous contents when the write fails, and the message says so.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


class WriteError(OSError):
    """A file of a run could not be written; the message names the file and why."""


def reason(error: OSError) -> str:
    """``error``'s cause in words, e.g. ``no space left on device``."""
    text = error.strerror or str(error) or type(error).__name__
    return text[0].lower() + text[1:]


@contextlib.contextmanager
def writing(path: str | Path, consequence: str = "") -> Iterator[None]:
    """Turn an ``OSError`` raised inside into a :class:`WriteError` about ``path``;
    ``consequence`` (e.g. ``the previous last.pt is intact``) ends the message."""
    try:
        yield
    except WriteError:
        raise
    except OSError as error:
        message = f"could not write {path}: {reason(error)}"
        failure = WriteError(message + (f"; {consequence}" if consequence else ""))
        failure.errno = error.errno
        raise failure from error


def write_atomically(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, flushed to disk
    and renamed over ``path``: readers see the old file or the whole new one, never a part.
    Raises :class:`WriteError` (the old file, if any, intact)."""
    path = Path(path)
    kept = f"the previous {path.name} is intact" if path.exists() else ""
    with writing(path, kept):
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        try:
            os.chmod(temporary, 0o666 & ~_umask())  # as open() would create it, not 0600
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(temporary)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def append_text(path: str | Path, text: str) -> None:
    """Append ``text`` to ``path`` in one write; if that fails, cut the file back to where it
    was (no half line), then raise :class:`WriteError`."""
    path = Path(path)
    size = path.stat().st_size if path.exists() else 0
    with writing(path, f"{path.name} keeps its earlier lines"):
        try:
            with open(path, "a", encoding="utf-8", newline="") as handle:
                handle.write(text)
        except OSError:
            with contextlib.suppress(OSError):
                os.truncate(path, size)
            raise


def require_writable(folder: str | Path) -> None:
    """Raise :class:`WriteError` unless files can be created in ``folder`` (made if missing)."""
    folder = Path(folder)
    with writing(folder, "nothing was trained"):
        folder.mkdir(parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(prefix=".write-test", dir=folder)
        os.close(descriptor)
        os.remove(probe)


def report_json(result: dict, output: str | Path | None = None) -> None:
    """Print ``result`` as indented JSON and, with ``output``, write it there atomically
    (what the measuring scripts end with)."""
    import json

    text = json.dumps(result, indent=1)
    print(text)
    if output is not None:
        write_atomically(output, (text + "\n").encode())
