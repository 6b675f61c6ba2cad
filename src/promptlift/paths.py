"""Folders promptlift creates for its files (the run store, the response cache): one typed error.

``make_parent`` creates the folder a file goes in at the moment it is opened; ``check_creatable``
says beforehand (a dry run) whether it could be, without creating anything.
"""

from __future__ import annotations

import os
from pathlib import Path

from promptlift.errors import ConfigError


def _refused(what: str, target: Path, why: str, kind: str) -> ConfigError:
    fix = "name a writable folder" if kind == "folder" else "name a file in a writable folder"
    return ConfigError(f"{what} {target} cannot be created ({why}); {fix}")


def make_parent(path: str | Path, what: str, *, kind: str = "file", target: str | Path | None = None) -> None:
    """``mkdir -p`` of ``path``'s folder; a folder that cannot be made (missing parent on a virtual
    filesystem, no permission, a file in the way) is a ``ConfigError`` naming ``what`` and
    ``target`` (the path the user gave; ``path`` when not given), not an ``OSError``."""
    directory = Path(os.path.abspath(path)).parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _refused(what, Path(target or path), _why(exc), kind) from None


def check_creatable(
    path: str | Path, what: str, *, kind: str = "file", target: str | Path | None = None
) -> None:
    """Whether ``path`` (a file) could be created, creating nothing: the nearest folder of it that
    exists must be a folder this process may write in."""
    probe = Path(os.path.abspath(path)).parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    shown = Path(target or path)
    if not probe.is_dir():
        raise _refused(what, shown, f"{probe} is a file, not a folder", kind)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise _refused(what, shown, f"{probe} is not writable", kind)
    try:
        fs = os.statvfs(probe)
    except (OSError, AttributeError):  # no statvfs (Windows): the folder's mode is all we know
        return
    if fs.f_flag & os.ST_RDONLY:
        raise _refused(what, shown, f"{probe} is on a read-only filesystem", kind)
    # /proc, /sys: writable by mode to root, yet no file can be made there (f_blocks 0). A ramfs
    # reports 0 blocks too and is writable, so only these two are refused.
    if fs.f_blocks == 0 and probe.resolve().parts[1:2] in (("proc",), ("sys",)):
        raise _refused(what, shown, f"{probe} is on a virtual filesystem that holds no files", kind)


def _why(exc: OSError) -> str:
    reason = exc.strerror or type(exc).__name__
    return f"{reason}: {exc.filename}" if exc.filename else reason
