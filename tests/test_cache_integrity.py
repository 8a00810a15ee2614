"""The frozen cache on a hostile disk: damaged shards, full disks, unwritable folders, parallel runs.

A shard is trusted only after every file matches the size and SHA-256 its metadata recorded at publish
time. Each damage below is detected (one warning line naming the shard and what failed), the shard's
examples are computed again, the damaged shard is replaced on disk, and the rows handed to the suffix are
exactly those of an undamaged cache.
"""

from __future__ import annotations

import errno
import json
import os
import runpy
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_cache import build, run, toy_setup, weights

from minifreeze import MinifreezeError, batching
from minifreeze import cache as frozen_cache
from minifreeze.cache import __main__ as cache_admin

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def fresh_registry():
    """Each test starts with an empty in-process registry; clearing it in a test stands for a new process."""
    frozen_cache.REGISTRY.clear()
    yield
    frozen_cache.REGISTRY.clear()


def shards(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob("frozen/*/shard-*"))


def leftovers(cache_dir: Path) -> list[Path]:
    """Anything in a key folder that is not a published shard (temporary or quarantined folders)."""
    return sorted(p for p in cache_dir.glob("frozen/*/*") if not p.name.startswith("shard-"))


def all_rows(cache, splits, pad_id) -> list[torch.Tensor]:
    """What the suffix would be fed for every example of every split."""
    rows = []
    for name, encoded in splits.items():
        for start in range(0, len(encoded), 64):
            batch = batching.collate(encoded, list(range(start, min(start + 64, len(encoded)))), pad_id)
            rows.append(cache.hidden(name, batch))
    return rows


def cache_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "frozen cache" in line]


def rewrite_vectors(shard: Path, fill) -> None:
    vectors = np.load(shard / "vectors.npy", mmap_mode="r+")
    vectors[:] = fill(vectors.shape).astype(vectors.dtype)
    vectors.flush()


def alter_offsets(shard: Path) -> None:
    offsets = np.load(shard / "offsets.npy")
    offsets[3] += 2  # example 2 one row longer, example 3 one row shorter: still increasing, same total
    np.save(shard / "offsets.npy", offsets)


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def swap_hashes(shard: Path) -> None:
    raw = (shard / "hashes.bin").read_bytes()
    n = frozen_cache.EXAMPLE_HASH_BYTES
    (shard / "hashes.bin").write_bytes(raw[n : 2 * n] + raw[:n] + raw[2 * n :])  # examples 0 and 1 swapped


DAMAGES = {  # what is done to the shard, and the words the warning must use
    "zeroed vectors": (lambda s: rewrite_vectors(s, np.zeros), "checksum mismatch in vectors.npy"),
    "randomized vectors": (
        lambda s: rewrite_vectors(s, np.random.default_rng(0).standard_normal),
        "checksum mismatch in vectors.npy",
    ),
    "altered offsets": (alter_offsets, "offsets inconsistent"),
    "swapped example hashes": (swap_hashes, "checksum mismatch in hashes.bin"),
    "truncated vectors": (lambda s: truncate(s / "vectors.npy"), "truncated: vectors.npy has"),
    "truncated offsets": (lambda s: truncate(s / "offsets.npy"), "truncated: offsets.npy has"),
    "deleted vectors": (lambda s: (s / "vectors.npy").unlink(), "vectors.npy missing"),
    "deleted metadata": (lambda s: (s / "meta.json").unlink(), "meta.json missing"),
    "garbage metadata": (lambda s: (s / "meta.json").write_text("{not json"), "meta.json unreadable"),
    "metadata not an object": (lambda s: (s / "meta.json").write_text("[1, 2]"), "meta.json unreadable"),
}


# ------------------------------------------------------------------------------------- (1) damaged shards


@pytest.mark.parametrize("max_gb", [4.0, 0.0], ids=["in-memory", "memory-mapped"])
@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_shard_is_detected_recomputed_and_replaced(
    toy_model, toy_data, tmp_path, capsys, damage, max_gb
):
    model, tokenizer, splits = toy_setup(toy_model, toy_data, "1")
    n = sum(len(s) for s in splits.values())
    clean = build(model, tokenizer, splits, tmp_path / "clean", max_gb=max_gb)  # the reference
    frozen_cache.REGISTRY.clear()
    build(model, tokenizer, splits, tmp_path / "cache", max_gb=max_gb)
    [shard] = shards(tmp_path / "cache")
    harm, words = DAMAGES[damage]
    harm(shard)
    frozen_cache.REGISTRY.clear()
    capsys.readouterr()

    repaired = build(model, tokenizer, splits, tmp_path / "cache", max_gb=max_gb)
    [line] = cache_lines(capsys.readouterr().err)
    assert shard.name in line and words in line and "computing" in line
    assert repaired.stats["computed"] == n and repaired.stats["hits"] == 0
    assert repaired.stats["in_memory"] == (max_gb > 0)
    for got, want in zip(
        all_rows(repaired, splits, tokenizer.pad_id), all_rows(clean, splits, tokenizer.pad_id)
    ):
        assert torch.equal(got, want)  # same examples in the same batches: the same bits

    frozen_cache.REGISTRY.clear()  # the next process finds the replacement whole, and says nothing
    again = build(model, tokenizer, splits, tmp_path / "cache", max_gb=max_gb)
    assert again.stats["hits"] == n and not cache_lines(capsys.readouterr().err)
    assert shards(tmp_path / "cache") == [shard] and not leftovers(tmp_path / "cache")


def test_round_one_shard_without_checksums_is_recomputed_once(toy_model, toy_data, tmp_path, capsys):
    """Shards written before checksums were kept cannot be trusted: one line, then computed and replaced."""
    model, tokenizer, splits = toy_setup(toy_model, toy_data, "1")
    build(model, tokenizer, splits, tmp_path)
    [shard] = shards(tmp_path)
    meta = json.loads((shard / "meta.json").read_text())
    meta.pop("files", None)  # round 1's metadata: the description, examples, tokens
    meta.pop("key", None)
    (shard / "meta.json").write_text(json.dumps(meta))
    frozen_cache.REGISTRY.clear()
    capsys.readouterr()
    assert build(model, tokenizer, splits, tmp_path).stats["computed"] == 256
    [line] = cache_lines(capsys.readouterr().err)
    assert "no checksums" in line and shard.name in line
    frozen_cache.REGISTRY.clear()
    assert build(model, tokenizer, splits, tmp_path).stats["hits"] == 256
    assert not cache_lines(capsys.readouterr().err)


def test_shard_copied_into_another_key_is_not_trusted(toy_model, toy_data, tmp_path, capsys):
    """A whole, intact shard of the fp32 key moved into the bf16 key's folder: its bytes are fine, its key not."""
    model, tokenizer, splits = toy_setup(toy_model, toy_data, "1")
    build(model, tokenizer, splits, tmp_path, dtype="fp32")
    build(model, tokenizer, splits, tmp_path, dtype="bf16")
    fp32 = frozen_cache.prefix_key(model, "fp32", torch.device("cpu"))[0]
    [ours, theirs] = sorted(shards(tmp_path), key=lambda p: p.parent.name != fp32)
    for name in ("vectors.npy", "offsets.npy", "hashes.bin", "meta.json"):
        (theirs / name).write_bytes((ours / name).read_bytes())
    frozen_cache.REGISTRY.clear()
    capsys.readouterr()
    assert build(model, tokenizer, splits, tmp_path, dtype="bf16").stats["computed"] == 256
    [line] = cache_lines(capsys.readouterr().err)
    assert "belongs to key" in line


def test_training_from_a_zeroed_cache_equals_the_uncached_run(toy_model, toy_data, tmp_path, capsys):
    """The reported defect end to end: a zeroed shard used to be served as hits (training on garbage)."""
    cache = ("--freeze", "-1", "--cache-frozen", "--cache-dir", str(tmp_path / "cache"))
    plain = run(toy_model, toy_data, tmp_path / "plain", "--freeze", "-1", epochs=1)
    run(toy_model, toy_data, tmp_path / "first", *cache, epochs=1)
    [shard] = shards(tmp_path / "cache")
    rewrite_vectors(shard, np.zeros)
    frozen_cache.REGISTRY.clear()
    damaged = run(toy_model, toy_data, tmp_path / "damaged", *cache, epochs=1)
    assert damaged["cache"]["computed"] == 256 and damaged["cache"]["hits"] == 0
    assert damaged["metrics"] == plain["metrics"]  # --freeze -1 is batch-invariant: bit for bit
    wa, wb = weights(tmp_path / "plain"), weights(tmp_path / "damaged")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert "checksum mismatch" in capsys.readouterr().err


# ----------------------------------------------------------------------------------- (2) a hostile disk


def test_disk_full_while_publishing_keeps_the_shard_in_memory(
    toy_model, toy_data, tmp_path, capsys, monkeypatch
):
    """ENOSPC half-way through writing a shard: one line, the run goes on from memory, nothing half-published."""
    model, tokenizer, splits = toy_setup(toy_model, toy_data, "1")
    clean = build(model, tokenizer, splits, tmp_path / "clean")
    frozen_cache.REGISTRY.clear()
    real_save = np.save

    def save(path, array, *args, **kwargs):
        if Path(path).name == "offsets.npy":  # vectors.npy was written: a half-finished shard folder
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_save(path, array, *args, **kwargs)

    monkeypatch.setattr(np, "save", save)
    capsys.readouterr()
    cache = build(model, tokenizer, splits, tmp_path / "cache")
    [line] = cache_lines(capsys.readouterr().err)
    assert "No space left on device" in line and "unsaved" in line
    assert not shards(tmp_path / "cache") and not leftovers(tmp_path / "cache")
    for got, want in zip(
        all_rows(cache, splits, tokenizer.pad_id), all_rows(clean, splits, tokenizer.pad_id)
    ):
        assert torch.equal(got, want)


def test_disk_full_for_a_memory_mapped_shard_is_one_line(toy_model, toy_data, tmp_path, monkeypatch):
    """A shard too large for memory is written in place on disk; its space is reserved before the prefix
    runs, so a full disk stops the run at once, with one line (rather than a SIGBUS half-way)."""
    model, tokenizer, splits = toy_setup(toy_model, toy_data, "1")

    def no_room(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", no_room)
    with pytest.raises(MinifreezeError, match="No space left on device.*--cache-dir") as err:
        build(model, tokenizer, splits, tmp_path, max_gb=0)
    assert "\n" not in str(err.value)
    assert not shards(tmp_path) and not leftovers(tmp_path)


def test_write_failure_after_a_memory_mapped_build_goes_on_unsaved(
    toy_model, toy_data, tmp_path, capsys, monkeypatch
):
    """The vectors were computed into the mapped file; writing the small files then fails. The run keeps
    reading its mapping (the unpublished folder is gone from disk), and says so in one line."""
    model, tokenizer, splits = toy_setup(toy_model, toy_data, "1")
    clean = build(model, tokenizer, splits, tmp_path / "clean", max_gb=0)
    frozen_cache.REGISTRY.clear()

    def broken(self, data):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(Path, "write_bytes", broken)
    capsys.readouterr()
    cache = build(model, tokenizer, splits, tmp_path / "cache", max_gb=0)
    assert "Input/output error" in cache_lines(capsys.readouterr().err)[0]
    assert not shards(tmp_path / "cache") and not leftovers(tmp_path / "cache")
    for got, want in zip(
        all_rows(cache, splits, tokenizer.pad_id), all_rows(clean, splits, tokenizer.pad_id)
    ):
        assert torch.equal(got, want)


def test_unwritable_cache_dir_is_one_line_but_serves_what_it_holds(
    toy_model, toy_data, tmp_path, monkeypatch
):
    """(We run as root, so permissions are simulated.) A read-only cache still serves hits; a miss that
    would have to be written says which folder and what to pass instead."""
    model, tokenizer, splits = toy_setup(toy_model, toy_data, "1")
    build(model, tokenizer, splits, tmp_path)
    frozen_cache.REGISTRY.clear()
    real_mkdir = Path.mkdir

    def denied(self, *args, **kwargs):
        if tmp_path in self.parents:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", denied)
    assert build(model, tokenizer, splits, tmp_path).stats["hits"] == 256
    _, _, short = toy_setup(toy_model, toy_data, "1", max_length=8)  # truncated examples miss
    with pytest.raises(
        MinifreezeError, match="Permission denied.*writable --cache-dir.*--cache-dir none"
    ) as err:
        build(model, tokenizer, short, tmp_path)
    assert "\n" not in str(err.value)


def test_cache_dir_that_is_a_file_is_one_line(toy_model, toy_data, tmp_path):
    model, tokenizer, splits = toy_setup(toy_model, toy_data, "1")
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(MinifreezeError, match="cannot write the frozen cache.*Not a directory") as err:
        build(model, tokenizer, splits, tmp_path / "file")
    assert "\n" not in str(err.value)


def test_a_build_that_fails_half_way_leaves_nothing(toy_model, toy_data, tmp_path, monkeypatch):
    """An error (or Ctrl-C) while the prefix runs: no half-written shard stays on disk, the model's mode is back."""
    model, tokenizer, splits = toy_setup(toy_model, toy_data, "1")
    model.train()
    calls = []

    def fails_second_time(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_prefix(*args)

    real_prefix = model.encoder.prefix
    monkeypatch.setattr(model.encoder, "prefix", fails_second_time)
    for max_gb in (4.0, 0.0):
        calls.clear()
        with pytest.raises(KeyboardInterrupt):
            build(model, tokenizer, splits, tmp_path, max_gb=max_gb)
        assert not shards(tmp_path) and not leftovers(tmp_path) and model.training


def test_leftovers_of_killed_builds_are_ignored_and_cleaned(toy_model, toy_data, tmp_path):
    """A killed build leaves its temporary folder: runs ignore it, and remove it once its process is gone
    (a live build's folder, or one whose owner cannot be told and that is recent, is left alone)."""
    model, tokenizer, splits = toy_setup(toy_model, toy_data, "1")
    build(model, tokenizer, splits, tmp_path)
    [key] = (tmp_path / "frozen").iterdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    host = socket.gethostname()
    killed = key / f".tmp-{host}-{int(dead.stdout)}-0123abcd"
    live = key / f".tmp-{host}-{os.getpid()}-4567cdef"
    unnamed = key / ".tmp-89abcdef"  # round 1's naming: only its age can tell
    for folder in (killed, live, unnamed):
        folder.mkdir()
        (folder / "vectors.npy").write_bytes(b"half a shard")
    frozen_cache.REGISTRY.clear()
    assert build(model, tokenizer, splits, tmp_path).stats["hits"] == 256
    assert not killed.exists() and live.exists() and unnamed.exists()
    os.utime(unnamed, (1e9, 1e9))
    frozen_cache.REGISTRY.clear()
    build(model, tokenizer, splits, tmp_path)
    assert not unnamed.exists() and live.exists()


def test_another_process_publishing_the_same_shard_first(toy_model, toy_data, tmp_path, monkeypatch):
    """The race two runs sharing a folder have: both compute the same examples; the second rename fails.
    The loser keeps its own (identical) shard, removes its temporary folder, and the winner's stays."""
    model, tokenizer, splits = toy_setup(toy_model, toy_data, "1")
    build(model, tokenizer, splits, tmp_path / "other")
    [winner] = shards(tmp_path / "other")
    real_publish = frozen_cache.publish

    def other_process_first(tmp, *args, **kwargs):
        target = tmp.parent / winner.name
        target.mkdir()
        for file in winner.iterdir():
            (target / file.name).write_bytes(file.read_bytes())
        return real_publish(tmp, *args, **kwargs)

    for max_gb in (4.0, 0.0):
        frozen_cache.REGISTRY.clear()
        cache_dir = tmp_path / f"shared-{max_gb}"
        with monkeypatch.context() as patch:
            patch.setattr(frozen_cache, "publish", other_process_first)
            cache = build(model, tokenizer, splits, cache_dir, max_gb=max_gb)
        assert cache.stats["computed"] == 256 and not leftovers(cache_dir)
        frozen_cache.REGISTRY.clear()
        assert build(model, tokenizer, splits, cache_dir, max_gb=max_gb).stats["hits"] == 256


BUILD_SCRIPT = """
import sys, time
from pathlib import Path
import torch
sys.path.insert(0, {tests!r})
from test_cache import toy_setup
from minifreeze import batching, cache as frozen_cache
model, tokenizer, splits = toy_setup(Path({model!r}), Path({data!r}), "1")
Path(sys.argv[1]).touch()
while not Path({go!r}).exists():  # both processes start building together
    time.sleep(0.005)
cache = frozen_cache.build(model, splits, pad_id=tokenizer.pad_id, batch_size=32, device=torch.device("cpu"),
                           cache_dir={cache!r}, max_gb={max_gb})
worst = 0.0  # against the prefix computed directly: a cache that served garbage would be far off
for name, encoded in splits.items():
    for start in range(0, len(encoded), 64):
        batch = batching.collate(encoded, list(range(start, min(start + 64, len(encoded)))), tokenizer.pad_id)
        with torch.no_grad():
            want = model.encoder.prefix(batch.input_ids, batch.attention_mask, batch.token_type_ids)
        worst = max(worst, (cache.hidden(name, batch) - want * batch.attention_mask[..., None]).abs().max().item())
print(cache.stats["computed"], cache.stats["hits"], worst)
"""


def build_in_two_processes(toy_model, toy_data, tmp_path, cache_dir, tag) -> list[tuple[int, int, float]]:
    """(computed, hits, worst row error) of two processes that build the same key in one folder at once."""
    go = tmp_path / f"go-{tag}"
    script = BUILD_SCRIPT.format(
        tests=str(REPO / "tests"), model=str(toy_model), data=str(toy_data), go=str(go), cache=str(cache_dir),
        max_gb=0,
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    ready = [tmp_path / f"ready-{tag}-{i}" for i in range(2)]
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(r)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for r in ready
    ]  # fmt: skip
    deadline = time.monotonic() + 120
    while (
        not all(r.exists() for r in ready)
        and time.monotonic() < deadline
        and all(p.poll() is None for p in procs)
    ):
        time.sleep(0.01)
    go.touch()
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    return [(int(c), int(h), float(w)) for c, h, w in (out.split() for out, _ in results)]


@pytest.mark.slow
def test_two_processes_build_and_repair_the_same_key_at_once(toy_model, toy_data, tmp_path, capsys):
    """Two real processes on one cache folder (memory-mapped shards: the riskier path), released together:
    both build the key at once, then both find the same shard zeroed and repair it at once. Both runs get
    the right rows, and the folder ends with one whole shard and nothing else."""
    cache_dir = tmp_path / "shared"
    for computed, hits, worst in build_in_two_processes(toy_model, toy_data, tmp_path, cache_dir, "build"):
        assert computed + hits == 256 and worst < 1e-5
    [shard] = shards(cache_dir)
    rewrite_vectors(shard, np.zeros)
    for computed, hits, worst in build_in_two_processes(toy_model, toy_data, tmp_path, cache_dir, "repair"):
        assert (
            computed + hits == 256 and worst < 1e-5
        )  # served from a repaired shard or computed: never zeros
    assert shards(cache_dir) == [shard] and not leftovers(cache_dir)
    model, tokenizer, splits = toy_setup(toy_model, toy_data, "1")
    again = build(model, tokenizer, splits, cache_dir, max_gb=0)
    assert again.stats["hits"] == 256 and not cache_lines(capsys.readouterr().err)


# ---------------------------------------------------------------------------- (3) python -m minifreeze.cache


def test_admin_verify_lists_damaged_shards_and_list_survives_them(toy_model, toy_data, tmp_path, capsys):
    model, tokenizer, splits = toy_setup(toy_model, toy_data, "1")
    for dtype in ("fp32", "bf16", "fp16"):
        build(model, tokenizer, splits, tmp_path, dtype=dtype)
    good, zeroed, no_meta = shards(tmp_path)
    rewrite_vectors(zeroed, np.zeros)
    (no_meta / "meta.json").unlink()
    root = tmp_path / "frozen"
    (root / "stray-file").write_text("not a key")
    (root / zeroed.parent.name / "shard-not-a-folder").write_text("junk")
    (root / good.parent.name / "shard-dangling").symlink_to(tmp_path / "nowhere")
    odd = root / ("0" * 32) / "shard-odd-metadata"  # a key of nothing but a shard with odd metadata
    odd.mkdir(parents=True)
    (odd / "meta.json").write_text('[{"examples": "many", "config": 3}]')
    (odd.parent / "shard-odd-config").mkdir()
    (odd.parent / "shard-odd-config" / "meta.json").write_text('{"examples": "many", "config": 3}')
    capsys.readouterr()
    admin = lambda *argv: cache_admin.main([*argv, "--cache-dir", str(tmp_path)])  # noqa: E731

    assert len(admin("list")) == 4 and "? L?" in capsys.readouterr().out
    damaged = admin("verify")
    out = capsys.readouterr().out
    assert sorted(damaged) == sorted(
        [zeroed, no_meta, zeroed.parent / "shard-not-a-folder", good.parent / "shard-dangling", odd,
         odd.parent / "shard-odd-config"]
    )  # fmt: skip
    assert f"{zeroed}: checksum mismatch in vectors.npy" in out and f"{no_meta}: meta.json missing" in out
    assert "7 shards checked, 6 damaged" in out
    assert good.is_dir() and zeroed.is_dir()  # verify only reports
    assert len(admin("clear")) == 4 and not [p for p in root.iterdir() if p.is_dir()]


def test_admin_on_an_unreadable_cache_folder_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "frozen").mkdir()

    def denied(self):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))

    monkeypatch.setattr(Path, "iterdir", denied)
    with pytest.raises(MinifreezeError, match="cannot read the frozen cache in .*Permission denied") as err:
        cache_admin.main(["list", "--cache-dir", str(tmp_path)])
    assert "\n" not in str(err.value)


def test_python_m_minifreeze_cache_runs_the_admin_command_on_the_one_registry(tmp_path, monkeypatch, capsys):
    """`python -m minifreeze.cache` used to execute cache.py a second time, as __main__: a second module
    object with its own shard registry beside the one training fills. Now it runs __main__.py alone, on
    the package's modules."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    argv = ["list", "--cache-dir", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "minifreeze.cache", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    nothing = f"no frozen cache in {tmp_path / 'frozen'}"
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, nothing, "")
    monkeypatch.setattr(sys, "argv", ["python -m minifreeze.cache", *argv])
    monkeypatch.delitem(sys.modules, "minifreeze.cache.__main__")  # imported above; a fresh -m has none
    ran = runpy.run_module("minifreeze.cache", run_name="__main__")  # what -m executes, in this process
    assert capsys.readouterr().out.strip() == nothing
    registries = [value for value in ran.values() if isinstance(value, frozen_cache.store.Registry)]
    assert "Registry" not in ran and registries in ([], [frozen_cache.REGISTRY])
    assert frozen_cache.store.REGISTRY is frozen_cache.REGISTRY
