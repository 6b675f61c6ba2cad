"""Whether the process that owns a ``running`` run is still there.

A run killed by SIGKILL or a reboot never writes its end, so ``running`` in the store only says that
the run started. Each run records its owner (host, boot, pid and the process's start time from
``/proc``) and the store's listing decides from it: on the owner's host and boot, a pid that is gone,
or reused by a process started at another time, is ``killed``; after a reboot every such run is
``killed``. Another host's processes cannot be seen, so there the run's last write (every scored row
and candidate refreshes it) decides: older than ``STALE_AFTER_S`` it shows ``stale?``.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promptlift.errors import ConfigError

STALE_AFTER_S = 15 * 60


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22), which
    tells a reused pid from the original; -1 for a zombie (killed, not yet reaped by its parent);
    None where there is no ``/proc``."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    # The command name (field 2) may hold spaces and parentheses: count fields after its last ")".
    fields = stat.rsplit(")", 1)[-1].split()
    if len(fields) <= 19:
        return None
    return -1 if fields[0] in ("Z", "X") else int(fields[19])


def owner() -> dict[str, Any]:
    """This process, as recorded with the runs it starts or resumes."""
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "boot": _read("/proc/sys/kernel/random/boot_id"),
        "pid": pid,
        "start": _start_ticks(pid),
    }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def listed_status(status: str, recorded: Mapping[str, Any] | None, updated: float, now: float) -> str:
    """``status`` as a listing should show it: a ``running`` run whose owner is gone is ``killed``;
    one on another host not heard from for ``STALE_AFTER_S`` is ``stale?``. Runs stored before
    owners were recorded keep their status."""
    if status != "running" or not recorded:
        return status
    here = owner()
    if recorded.get("host") != here["host"]:
        return "running" if now - updated < STALE_AFTER_S else "stale?"
    if recorded.get("boot") and here["boot"] and recorded["boot"] != here["boot"]:
        return "killed"  # the machine rebooted since the run started
    pid = int(recorded.get("pid") or 0)
    if pid <= 0 or not _pid_alive(pid):
        return "killed"
    start = recorded.get("start")
    if start is not None and _start_ticks(pid) not in (None, start):
        return "killed"  # the pid now belongs to another process
    return "running"


class RunInUse(ConfigError):
    """``--resume`` of a run another live process is driving: refused before anything is sent."""


def described(recorded: Mapping[str, Any] | None) -> str:
    """Where a run's process is, as recorded: "pid 123 on host-a", or "" when none is recorded."""
    if not recorded or not recorded.get("pid"):
        return ""
    return f"pid {recorded['pid']} on {recorded.get('host') or 'an unknown host'}"


def same_process(recorded: Mapping[str, Any] | None, here: Mapping[str, Any]) -> bool:
    if not recorded:
        return False
    return all(recorded.get(k) == here.get(k) for k in ("host", "boot", "pid", "start"))


def refuse_if_live(
    run_id: str, status: str, recorded: Mapping[str, Any] | None, updated: float, here: Mapping[str, Any]
) -> None:
    """Raise ``RunInUse`` when ``run_id`` is ``running`` and its owner, another process, is alive
    (``listed_status``). A run stored before owners were recorded cannot be told apart and is let
    through; so is this process's own run (a library caller resuming after an error)."""
    if not recorded or same_process(recorded, here):
        return
    if listed_status(status, recorded, updated, time.time()) != "running":
        return
    where = described(recorded)
    if recorded.get("host") != here.get("host"):  # its process cannot be seen from here: its last write
        seen = f"{where}, which wrote to the store {time.time() - updated:.0f} s ago"
    else:
        seen = f"its process is alive: {where}" if where else "its process is alive"
    raise RunInUse(
        f"run {run_id} is running ({seen}); "
        f"resuming it too would mix two searches' totals: wait for it to end, or stop that process "
        f"(a killed run can be resumed)"
    )
