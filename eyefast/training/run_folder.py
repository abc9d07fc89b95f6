"""The run folder ``<workspace>/<name>/``: what a run writes there, the rule that a new training never
replaces an earlier run unless asked to, and the lock that keeps a second training out while one runs."""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket

__all__ = ["RunExistsError", "RunLockedError", "RunLock", "RUN_FILES", "LOCK_FILE", "holds_run",
           "prepare_run_folder", "remove_stale_temporaries", "pid_alive"]

log = logging.getLogger("eyefast.training")

#: what a training (and the export and evaluation of it) writes into its run folder
RUN_FILES = ("config.yaml", "latest.pth", "checkpoints", "scalars.csv", "tb", "vis", "val.json", "export",
             "eval.json", "eval")
#: the lock file of a training in progress (its PID and host)
LOCK_FILE = "train.lock"
# atomic_save's temporaries: .latest.pth.tmp<PID>, .step_000100.pth.tmp<PID>
_TMP_RE = re.compile(r"^\.(latest|step_\d+)\.pth\.tmp(\d+)$")


class RunExistsError(FileExistsError):
    """The run folder already holds a run, and neither resuming nor overwriting it was asked for."""


class RunLockedError(FileExistsError):
    """Another training holds the run folder's lock (the message names the folder and its PID)."""


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists on this machine (one we may not signal counts too)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def holds_run(folder: str) -> bool:
    """True when ``folder`` holds a trained run: ``latest.pth`` or a checkpoint in ``checkpoints/`` (a
    training that stopped before its first checkpoint left nothing to lose)."""
    ck = os.path.join(folder, "checkpoints")
    return os.path.isfile(os.path.join(folder, "latest.pth")) or (
        os.path.isdir(ck) and any(f.endswith(".pth") for f in os.listdir(ck)))


def prepare_run_folder(folder: str, resumed: bool, overwrite: bool) -> None:
    """Creates ``folder`` for a training. A fresh training (``resumed`` False) into a folder that holds a
    run is refused (:class:`RunExistsError`) unless ``overwrite``, which first deletes that run's
    :data:`RUN_FILES`. Call it while holding the folder's :class:`RunLock`."""
    if not resumed and holds_run(folder):
        if not overwrite:
            raise RunExistsError(
                f"run folder '{folder}' already holds a run; continue it with --resume, replace it with "
                "--overwrite, or train under another name (--set name=NAME)")
        for f in RUN_FILES:
            p = os.path.join(folder, f)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            elif os.path.lexists(p):
                os.remove(p)
    os.makedirs(folder, exist_ok=True)


def remove_stale_temporaries(folder: str) -> list:
    """Deletes the checkpoint temporaries (``.latest.pth.tmpPID``, ``checkpoints/.step_*.pth.tmpPID``) that
    a killed training left in ``folder``: those whose PID no longer runs. Returns their paths."""
    removed = []
    for d in (folder, os.path.join(folder, "checkpoints")):
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for f in names:
            m = _TMP_RE.match(f)
            if m and int(m.group(2)) != os.getpid() and not pid_alive(int(m.group(2))):
                p = os.path.join(d, f)
                try:
                    os.remove(p)
                except OSError:
                    continue
                removed.append(p)
    if removed:
        log.warning(f"removed {len(removed)} unfinished checkpoint file(s) a stopped training left in '{folder}': "
                    + ", ".join(os.path.basename(p) for p in removed))
    return removed


class RunLock:
    """The lock file ``<folder>/train.lock`` of a training in progress: ``acquire()`` writes this process's
    PID and host into it, ``release()`` removes it (also a context manager).

    A second writer gets :class:`RunLockedError` naming the folder and the holder's PID. Where the
    operating system has advisory file locks (``fcntl.flock``: Linux, macOS), the lock is held on the
    open file and released by the kernel when the holder dies, so a crashed training never blocks
    the folder; a lock file left by a process that is gone (or whose lock no process holds) is taken
    over with a note. Elsewhere the PID decides: a lock whose PID is not alive on this host is stale."""

    def __init__(self, folder: str):
        self.folder = folder
        self.path = os.path.join(folder, LOCK_FILE)
        self._fd = None

    @staticmethod
    def _owner(text: str):
        """(pid, host) from a lock file's text (None, None when unreadable)."""
        parts = text.split()
        try:
            return int(parts[0]), (parts[1] if len(parts) > 1 else None)
        except (IndexError, ValueError):
            return None, None

    def _locked_error(self, pid, host) -> RunLockedError:
        who = f"PID {pid}" + (f" on {host}" if host and host != socket.gethostname() else "") if pid else "another process"
        return RunLockedError(
            f"run folder '{self.folder}' is in use by another training ({who}; lock file '{self.path}'): wait "
            "for it to finish, stop it, or train under another name (--set name=NAME)")

    def acquire(self) -> RunLock:
        os.makedirs(self.folder, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # no advisory locks (Windows): the PID alone decides
            fcntl = None
        me = f"{os.getpid()} {socket.gethostname()}\n"
        if fcntl is None:
            return self._acquire_by_pid(me)
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    pid, host = self._owner(os.pread(fd, 200, 0).decode(errors="replace"))
                    raise self._locked_error(pid, host) from None
                try:  # the file may have been removed by a holder releasing it after we opened it: retry
                    same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if not same:
                    os.close(fd)
                    continue
                pid, host = self._owner(os.pread(fd, 200, 0).decode(errors="replace"))
                if pid is not None and pid != os.getpid():
                    state = ("no longer runs" if not pid_alive(pid) or (host and host != socket.gethostname())
                             else "does not hold it")
                    log.warning(f"run folder '{self.folder}': taking over the stale lock of PID {pid} (that "
                                f"process {state}: a training that stopped without cleaning up)")
                os.ftruncate(fd, 0)
                os.pwrite(fd, me.encode(), 0)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            return self
        raise self._locked_error(None, None)

    def _acquire_by_pid(self, me: str) -> RunLock:
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                try:
                    with open(self.path, encoding="utf-8", errors="replace") as f:
                        pid, host = self._owner(f.read())
                except OSError:
                    continue
                if pid is not None and (pid_alive(pid) or (host and host != socket.gethostname())):
                    raise self._locked_error(pid, host) from None
                log.warning(f"run folder '{self.folder}': taking over the stale lock of PID {pid} (that process "
                            "no longer runs)")
                try:
                    os.remove(self.path)
                except OSError:
                    pass
                continue
            os.write(fd, me.encode())
            self._fd = fd
            return self
        raise self._locked_error(None, None)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.remove(self.path)  # before unlocking: a waiting writer then creates a fresh file
        except OSError:
            pass
        os.close(self._fd)  # releases the flock
        self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
