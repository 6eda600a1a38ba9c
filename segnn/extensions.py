"""Build a C++ extension once per machine and load it, without ever hanging on a dead build.

``torch.utils.cpp_extension.load`` guards its build folder with a lock file that a killed
build leaves behind, and every later process then waits for it forever. Here each build runs
in a folder of its own and its library is moved into the shared cache atomically, so a killed
build leaves at worst an abandoned folder (removed by the next build). Builds are serialised by
an ``flock`` on ``<cache>/<name>.lock``: the kernel releases it when its holder dies, however it
dies, and the file records the holder's process id for the message of those that wait. A
process that finds the lock held by a live process waits at most
``$SEGNN_EXTENSION_TIMEOUT`` seconds (default 300), then gives up with a message naming the lock.
Several processes starting at once (``torchrun`` ranks) build once: the others wait and load
what the first built.

The cache is ``$SEGNN_EXTENSION_DIR``, else ``$XDG_CACHE_HOME/segnn/extensions``, else
``~/.cache/segnn/extensions``; a library's name carries a hash of its source, flags, torch and
Python versions, so a changed source builds anew.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

TIMEOUT_ENV = "SEGNN_EXTENSION_TIMEOUT"
DIRECTORY_ENV = "SEGNN_EXTENSION_DIR"
DEFAULT_TIMEOUT_S = 300.0
POLL_S = 0.2
_loaded: dict[str, Path] = {}
"""Libraries this process has loaded, by name: loading one twice would register its ops twice."""


class ExtensionBuildError(RuntimeError):
    """An extension that could not be built or loaded (no compiler, a failed build, a build of
    another process that did not finish in time)."""


def cache_directory() -> Path:
    """Where built libraries are kept (see the module docstring)."""
    if DIRECTORY_ENV in os.environ:
        return Path(os.environ[DIRECTORY_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "segnn" / "extensions"


def library_path(name: str, source: Path, flags: list[str]) -> Path:
    """The cached library of ``source`` built with ``flags`` on this torch and Python."""
    digest = hashlib.sha256()
    for part in (
        source.read_bytes(),
        " ".join(flags).encode(),
        torch.__version__.encode(),
        sys.version.encode(),
        platform.machine().encode(),
    ):
        digest.update(part + b"\0")
    return cache_directory() / f"{name}-{digest.hexdigest()[:16]}.so"


def load_extension(name: str, source: Path, flags: list[str]) -> Path:
    """Load the ops library built from ``source`` (``TORCH_LIBRARY`` registrations), building
    it first if no process has; returns the library's path. Raises
    :class:`ExtensionBuildError` with the reason when it cannot. Loads once per process."""
    if name in _loaded:
        return _loaded[name]
    library = library_path(name, source, flags)
    if not library.exists():
        library.parent.mkdir(parents=True, exist_ok=True)
        with _build_lock(library.parent / f"{name}.lock"):
            if not library.exists():  # another process may have built it while we waited
                _build(name, source, flags, library)  # which loads it
                _loaded[name] = library
                return library
    torch.ops.load_library(str(library))
    _loaded[name] = library
    return library


def _build(name: str, source: Path, flags: list[str], library: Path) -> None:
    """Compile and load in a fresh folder beside ``library``, then move the result into
    place."""
    _add_pip_ninja_to_path()
    for abandoned in library.parent.glob(f"{name}-build-*"):  # from builds that were killed
        shutil.rmtree(abandoned, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{name}-build-", dir=library.parent))
    try:
        from torch.utils.cpp_extension import load

        try:
            built = load(
                name=name,
                sources=[str(source)],
                extra_cflags=flags,
                build_directory=str(folder),
                is_python_module=False,
                verbose=False,
            )
        except Exception as error:
            lines = str(error).strip().splitlines()
            raise ExtensionBuildError(
                f"{type(error).__name__}: {lines[-1] if lines else ''}"
            ) from error
        staged = folder / "staged.so"
        shutil.copyfile(built, staged)
        os.replace(staged, library)  # atomic: others see no library or a whole one
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _add_pip_ninja_to_path() -> None:
    """PyTorch builds with ninja; the ``ninja`` pip package ships one outside ``PATH``."""
    if shutil.which("ninja") is not None:
        return
    try:
        import ninja
    except ImportError:
        return
    os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")


@contextlib.contextmanager
def _build_lock(path: Path):
    """Hold the exclusive ``flock`` on ``path``; wait for a live holder at most the timeout."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): builds in separate folders stay safe, maybe twice
        yield
        return
    timeout = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
    handle = open(path, "a+")
    try:
        deadline, told = time.monotonic() + timeout, False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(path)
                if time.monotonic() >= deadline:
                    raise ExtensionBuildError(
                        f"process {holder} has been building it for over {timeout:.0f} s and "
                        f"still holds {path} (${TIMEOUT_ENV} sets how long to wait)"
                    ) from None
                if not told:
                    print(
                        f"segnn: waiting for process {holder}, which is building the C++ "
                        f"kernels (lock {path}; at most {timeout:.0f} s)",
                        file=sys.stderr,
                        flush=True,
                    )
                    told = True
                time.sleep(POLL_S)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock


def _holder(path: Path) -> str:
    """The process id recorded in the lock file (``unknown`` while it is being written)."""
    with contextlib.suppress(OSError):
        text = path.read_text().strip()
        if text.isdigit():
            return text
    return "unknown"
