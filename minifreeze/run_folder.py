"""The run folder `--out DIR`: one run at a time, nothing lost when a run fails, disk errors in one line.

- `RunFolder(...)` only reads: it refuses a file where the folder should be, a folder that already holds a
  run (without --overwrite), and a --resume without a checkpoint, before anything is written.
- `begin()` is the run's first write, called once data, model and freeze plan have all loaded: it takes
  the lock, moves an old run aside (--overwrite), repairs what a killed checkpoint save left behind
  (checkpoints.recover) and writes config.json.
- The lock is flock() on DIR/.lock, held for the whole run. The kernel drops it when the process ends,
  kill -9 included, so a lock is never stale; the file names its holder for the message a second run prints.
- --overwrite keeps the old run in DIR/.replaced-PID until the new run's first checkpoint (`commit()`): a
  run that fails before that puts it back as it was, and a fresh run that fails before that removes what it
  wrote (and the folder, if it made it). A process killed in that window leaves .replaced-PID behind; the
  next run in DIR puts it back first, or deletes it if the killed run did reach a checkpoint. (While the
  old entries move, the folder is .replacing-PID: one killed halfway is simply moved back.)
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from contextlib import contextmanager, suppress
from pathlib import Path

from . import checkpoints
from .errors import MinifreezeError
from .runtime import write_json

LOCK = ".lock"
REPLACING, REPLACED = ".replacing-", ".replaced-"  # an old run moving aside, and one moved aside whole


def disk_error(folder: Path, err: OSError) -> MinifreezeError:
    where = f" ({err.filename})" if err.filename else ""
    return MinifreezeError(
        f"cannot write the run folder {folder}{where}: {err.strerror or err}; "
        "free some space, fix its permissions or choose another --out"
    )


@contextmanager
def disk_errors(folder: Path):
    """An OSError while writing the run folder (full disk, no permission) becomes one line naming it."""
    try:
        yield
    except OSError as err:
        raise disk_error(folder, err) from None


def has_checkpoint(last: Path) -> bool:
    """DIR/last, or the whole old copy a save killed between its two renames left (see write_atomically)."""
    copies = [last, *last.parent.glob(f".{last.name}.old-*")]
    return any((copy / "state.pt").is_file() for copy in copies)


def trim_metrics(path: Path, step: int) -> None:
    """Keep the evaluations up to the checkpoint's step. A run killed after logging an evaluation but before
    its checkpoint re-does those steps when resumed, and must not log them twice; a line cut short goes too."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        with suppress(ValueError):
            if json.loads(line)["step"] <= step:
                kept.append(line + "\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept))
    tmp.replace(path)


class RunFolder:
    """The --out folder of one run (a context manager: leaving it unlocks, and undoes a failed start)."""

    def __init__(self, path: Path, resume: bool, overwrite: bool, active: bool = True):
        self.path, self.resume, self.overwrite, self.active = Path(path), resume, overwrite, active
        self.created = self.began = False
        self.committed = resume  # a resumed run's folder already has its checkpoint
        self.replaced: Path | None = None
        self.lock_handle = None
        if active:
            self.check()

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.began and not self.committed and exc_type is not None:
            with suppress(OSError):  # best effort: what is left is put back by the next run in DIR
                self.put_back(self.replaced)
        if self.lock_handle is not None:
            self.lock_handle.close()  # releases the flock

    def entries(self) -> list[Path]:
        """What the run wrote: everything but the lock and an old run kept aside."""
        aside = (REPLACING, REPLACED)
        return [p for p in self.path.iterdir() if p.name != LOCK and not p.name.startswith(aside)]

    def check(self) -> None:
        out = self.path
        if out.exists() and not out.is_dir():
            raise MinifreezeError(f"--out {out} is a file, not a folder: choose another --out")
        lasts = [out / "last", *(aside / "last" for aside in out.glob(".replac*-*"))]  # see put_back_stale
        if self.resume and not any(map(has_checkpoint, lasts)):
            raise MinifreezeError(f"--resume: {out} holds no checkpoint to resume from (expected {out}/last)")
        holds_run = out.is_dir() and any(p.name != LOCK for p in out.iterdir())
        if not self.resume and holds_run and not self.overwrite:
            raise MinifreezeError(f"{out} already holds a run: pass --overwrite, --resume, or another --out")

    def begin(self, config: dict | None) -> None:
        """Lock DIR and make it this run's; `config` (None on resume) is written to DIR/config.json."""
        if not self.active:
            return
        with disk_errors(self.path):
            self.created = not self.path.exists()
            self.path.mkdir(parents=True, exist_ok=True)
            self.lock()
            self.put_back_stale()
            self.check()  # again: until the lock, another run could have changed DIR
            for name in ("last", "model", "delta"):
                checkpoints.recover(self.path / name)
            if not self.resume and self.entries():
                self.move_aside()
            self.began = True
            if config is not None:
                write_json(self.path / "config.json", config)

    def resumed_at(self, step: int) -> None:
        """A resumed run redoes the steps after its checkpoint's `step`: the lines it logged there go."""
        if self.active:
            with disk_errors(self.path):
                for log in ("metrics.jsonl", "train_log.jsonl"):
                    trim_metrics(self.path / log, step)

    def commit(self) -> None:
        """The run saved its first checkpoint: from now on DIR is its own, and the run it replaced goes."""
        if self.active and not self.committed:
            self.committed = True
            if self.replaced is not None:
                shutil.rmtree(self.replaced, ignore_errors=True)

    def move_aside(self) -> None:
        moving = self.path / f"{REPLACING}{os.getpid()}"
        moving.mkdir(exist_ok=True)
        for entry in self.entries():
            os.replace(entry, moving / entry.name)
        self.replaced = self.path / f"{REPLACED}{os.getpid()}"
        os.replace(moving, self.replaced)

    def put_back_stale(self) -> None:
        """Finish what a --overwrite killed before its first checkpoint left (its lock is free, so it is dead)."""
        for stale in self.path.glob(REPLACING + "*"):  # killed while moving: nothing new was written yet
            self.put_back(stale, remove_new=False)
        for stale in self.path.glob(REPLACED + "*"):
            if has_checkpoint(self.path / "last"):
                shutil.rmtree(stale)  # the killed run got as far as a checkpoint: DIR is its own
            else:
                self.put_back(stale)

    def put_back(self, replaced: Path | None, remove_new: bool = True) -> None:
        """Remove what a run that never reached a checkpoint wrote; restore the run it replaced, if any."""
        for entry in self.entries() if remove_new else []:
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        if replaced is not None:
            for entry in replaced.iterdir():
                os.replace(entry, self.path / entry.name)
            replaced.rmdir()
        elif self.created:
            (self.path / LOCK).unlink()
            self.path.rmdir()

    def lock(self) -> None:
        path = self.path / LOCK
        handle = open(path, "a+")  # noqa: SIM115 - held open for the whole run: the flock lives on it
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(handle.fileno()).st_ino != os.stat(path).st_ino:  # removed by a run that failed
                raise BlockingIOError
        except (BlockingIOError, FileNotFoundError):
            handle.seek(0)
            holder = handle.read().strip() or "another run"
            handle.close()
            raise MinifreezeError(
                f"{self.path} is in use by {holder}; wait for it or choose another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} (started {started})\n")
        handle.flush()
        self.lock_handle = handle
