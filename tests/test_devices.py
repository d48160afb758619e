"""interp.embed.devices: processes of one job given several GPUs each take a GPU of their own."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from interp.embed.devices import claim_one_gpu


def _claim(lock_dir: str, listed: str, results, release) -> None:
    environ = {"CUDA_VISIBLE_DEVICES": listed}
    gpu = claim_one_gpu(environ, lock_dir)
    again = claim_one_gpu(environ, lock_dir)  # the same GPU, not a second lock
    results.put((gpu, again, environ["CUDA_VISIBLE_DEVICES"]))
    release.wait(60)  # hold the lock while the others claim


def test_each_process_of_a_grouped_job_claims_its_own_gpu(tmp_path: Path) -> None:
    # three shard processes of a group job given GPUs 3 and 5 (a node's indices; UUIDs work the same): until the
    # thirty-third session all of them used cuda:0, the first listed, and the other GPU sat idle
    ctx = mp.get_context("spawn")
    results, release = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_claim, args=(str(tmp_path), "3,GPU-5a1b", results, release)) for _ in range(3)]
    for p in procs:
        p.start()
    got = [results.get(timeout=60) for _ in procs]
    release.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    claimed = sorted(g for g, _, _ in got if g is not None)
    assert claimed == ["3", "GPU-5a1b"]  # each GPU once
    for gpu, again, visible in got:
        if gpu is None:  # every GPU held: the environment left as it was
            assert again is None and visible == "3,GPU-5a1b"
        else:  # the claimed GPU is the only one CUDA will see
            assert again == gpu and visible == gpu
    # the locks went with the processes: a new process claims the first GPU again
    ctx.Process(target=_claim, args=(str(tmp_path), "3,GPU-5a1b", results, release)).start()
    assert results.get(timeout=60)[0] == "3"


def test_a_lock_path_that_is_not_a_file_leaves_that_gpu_as_held(tmp_path: Path, monkeypatch) -> None:
    """A directory where GPU 0's lock file belongs: the read-only open succeeded and fdopen raised
    IsADirectoryError (the claim died); that GPU is now skipped, as one held."""
    from interp.embed import devices

    monkeypatch.setattr(devices, "_CLAIMED", {})  # this process's claim, undone after the test
    (tmp_path / "interp-gpu-0.lock").mkdir()
    environ = {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert claim_one_gpu(environ, tmp_path) == "1" and environ["CUDA_VISIBLE_DEVICES"] == "1"


def test_one_or_no_listed_gpu_is_left_alone(tmp_path: Path) -> None:
    for environ in ({}, {"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": ""}):
        before = dict(environ)
        assert claim_one_gpu(environ, tmp_path) is None and environ == before
    assert not list(tmp_path.iterdir())


def _claim_as(uid: int, lock_dir: str, listed: str, results) -> None:
    import os

    os.setuid(uid)  # another user of the node
    results.put(claim_one_gpu({"CUDA_VISIBLE_DEVICES": listed}, lock_dir))


def test_lock_files_left_by_another_user_do_not_stop_a_claim() -> None:
    """The lock files stay in the shared temporary folder, 0644 and owned by whoever ran first; another user's
    job opened them to append and died with PermissionError. Now it opens them read-only (flock needs no more)."""
    import os
    import shutil
    import tempfile

    import pytest

    if os.geteuid() != 0:
        pytest.skip("needs root to act as a second user")
    folder = tempfile.mkdtemp(prefix="interp-locks-")  # outside pytest's 0700 folders, so the other user reaches it
    try:
        os.chmod(folder, 0o1777)
        ctx = mp.get_context("spawn")
        results = ctx.Queue()
        first = ctx.Process(target=_claim_as, args=(0, folder, "0,1", results))
        first.start()
        assert results.get(timeout=60) == "0"
        first.join(60)
        lock = Path(folder) / "interp-gpu-0.lock"  # root's, not writable by others (umask), as on a real node
        os.chmod(lock, 0o644)
        assert lock.stat().st_uid == 0 and not lock.stat().st_mode & 0o022
        other = ctx.Process(target=_claim_as, args=(65534, folder, "0,1", results))  # nobody
        other.start()
        assert results.get(timeout=60) == "0"  # root's lock went with its process: free again
        other.join(60)
        assert other.exitcode == 0
    finally:
        shutil.rmtree(folder)
