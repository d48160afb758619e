"""Which GPU a job uses when its scheduler gave it several.

A SLURM group job bundling n GPU shards (`--group-components cohort_embed_shards=n`) is given n GPUs, as
Snakemake sums the shards' `gpu=1`, and runs the n shard processes side by side; each would take the first
visible GPU (`cuda` is `cuda:0`), leaving the others idle and every model on one card. `claim_one_gpu` gives each
process a GPU of its own: it takes an exclusive lock on one listed GPU that no other process of the node holds and
makes it the only visible one, so every library's `cuda` is that GPU.
"""

from __future__ import annotations

import fcntl
import os
import re
import stat
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

#: the GPU this process claimed and its lock, held open for the life of the process (the lock goes with it)
_CLAIMED: dict[str, object] = {}


def claim_one_gpu(environ: MutableMapping[str, str] | None = None, lock_dir: str | Path | None = None) -> str | None:
    """Where CUDA_VISIBLE_DEVICES lists several GPUs, the id of one no other process holds, now the only one
    visible (CUDA_VISIBLE_DEVICES set to it); None, leaving everything as it is, where one or none is listed or
    every listed GPU is held. Call it before CUDA is initialised (before `torch.cuda.is_available()`): CUDA reads
    the variable once. Calling it again in the process returns the same GPU.

    environ: the environment to read and set (os.environ); lock_dir: where the per-GPU lock files live (the
    system's temporary folder, which the processes of one node share).
    """
    environ = os.environ if environ is None else environ
    if "gpu" in _CLAIMED:
        return str(_CLAIMED["gpu"])
    listed = [x.strip() for x in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if x.strip()]
    if len(listed) < 2:
        return None
    folder = Path(lock_dir or tempfile.gettempdir())
    for gpu in listed:
        # ids may be indices or UUIDs ("GPU-8c0f..."); the lock names the GPU, so jobs sharing a node never clash
        path = folder / f"interp-gpu-{re.sub(r'[^A-Za-z0-9_.-]', '_', gpu)}.lock"
        # read-only: a lock file another user's job left (0644 in the shared temporary folder) opens and locks
        # all the same (flock needs no write access), where opening it to append was a PermissionError
        fd = _open_lock(path)
        if fd is None:  # not even readable: leave that GPU as if held
            continue
        handle = os.fdopen(fd, "rb")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _CLAIMED.update(gpu=gpu, lock=handle)
        environ["CUDA_VISIBLE_DEVICES"] = gpu
        return gpu
    return None


def _open_lock(path: Path) -> int | None:
    """A read-only descriptor of the lock file, created if absent; None when it cannot be opened. An existing
    file is opened without O_CREAT: under fs.protected_regular (systemd's default) O_CREAT on another user's file
    in a sticky world-writable folder such as /tmp is refused even when it exists."""
    quiet = os.O_NONBLOCK | os.O_NOFOLLOW  # a FIFO or a link at the path must not block or lead elsewhere
    for flags in (os.O_RDONLY, os.O_RDONLY | os.O_CREAT | os.O_EXCL, os.O_RDONLY):  # the last: created meanwhile
        try:
            fd = os.open(path, flags | quiet, 0o666)
        except (FileNotFoundError, FileExistsError):
            continue
        except OSError:
            return None
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
        os.close(fd)  # a directory (read-only opens one) or a FIFO: not a lock file
        return None
    return None
