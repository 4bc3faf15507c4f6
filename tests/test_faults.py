"""Nothing lost, nothing mixed up: run directories under real faults and bad input.

Each fault is injected for real: a second process, a real signal, ``kill -9``, a torn line
written into metrics.jsonl, a full disk (a small tmpfs mounted in a private mount namespace:
``unshare -m`` as root, ``unshare -Urm`` otherwise), an unwritable folder (``chmod`` for an
ordinary user; as root, for whom permissions do not block writes, a read-only bind mount in a
private mount namespace). Where no mount namespace can be had, the full disk and the unwritable
folder fall back to a mock at the open level (``os.fdopen`` writes failing with ENOSPC;
``open``/``os.open``/``os.mkdir`` failing with EACCES), in process; ``RNNLAB_TEST_FAULTS=mock``
forces that fallback. Each test checks the one ``error:`` line and that the run directory is
intact and resumes exactly: the same weights as a run that was never disturbed.
"""

import builtins
import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from rnnlab import checkpoint, console, runs, train
from rnnlab.cli import main
from rnnlab.data import shakespeare_text

SRC = str(Path(runs.__file__).parents[1])
ENV = {**os.environ, "OMP_NUM_THREADS": "1",  # one thread, as the tests: identical sums
       "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
TINY = ["--hidden-size", "8", "--num-layers", "1", "--batch-size", "2", "--seq-len", "8",
        "--eval-every", "1000", "--seed", "3", "--decay", "none", "--device", "cpu", "--quiet"]


# ---- helpers -------------------------------------------------------------------------------

def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error_line(stderr: str, rc: int, *fragments) -> str:
    """Exit 2 and one line ``error: ...``, the last (after ``note:`` and progress lines, if
    any), no traceback."""
    lines = stderr.strip().splitlines()
    assert rc == 2, (rc, stderr)
    assert "Traceback" not in stderr and not any(x.startswith("error: ") for x in lines[:-1])
    assert lines[-1].startswith("error: "), stderr
    for f in fragments:
        assert str(f) in lines[-1], (f, lines[-1])
    return lines[-1]


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rnnlab", *map(str, args)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(cond, proc=None, limit=120):
    deadline = time.time() + limit
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"exited early ({proc.returncode}): {proc.stderr.read()}")
        assert time.time() < deadline, "timed out waiting"
        time.sleep(0.02)


def stopped_run(corpus, out, checkpoint_every, when, sig):
    """A training process into ``out``, sent ``sig`` once ``when()``: (process, rc, stderr)."""
    a = start("train", "--text", corpus, *TINY, "--steps", 100000, "--checkpoint-every",
              checkpoint_every, "--out", out)
    try:
        wait_for(when, a)
        a.send_signal(sig)
        rc = a.wait(60)
        return a, rc, a.stderr.read()
    finally:
        a.kill()


def metric_lines(out: Path) -> list[dict]:
    p = out / "metrics.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


def snapshot(out: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / "small.txt"
    p.write_text(shakespeare_text()[:3000], encoding="utf-8")
    return p


def assert_resumes_exactly(out: Path, steps: int, tmp_path: Path) -> None:
    """Resume ``out`` to ``steps``; it must equal a run of ``steps`` never interrupted."""
    r = runs.train_run(out, resume=True, steps=steps, progress=False)
    assert r.step == steps
    cfg = json.loads((out / "config.json").read_text())
    cfg["train"]["steps"] = steps
    ref = tmp_path / "never-interrupted"
    shutil.rmtree(ref, ignore_errors=True)
    runs.train_run(ref, cfg, progress=False)
    a, b = checkpoint.load(ref / "last.pt")["model"], checkpoint.load(out / "last.pt")["model"]
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6)
    assert [m["step"] for m in metric_lines(out)] == list(range(1, steps + 1))
    assert [m["loss"] for m in metric_lines(out)] == pytest.approx(
        [m["loss"] for m in metric_lines(ref)], abs=1e-6)


@lru_cache(maxsize=1)
def namespace_prefix() -> tuple[str, ...] | None:
    """A command prefix under which a shell may mount (a private mount namespace), or None."""
    if os.environ.get("RNNLAB_TEST_FAULTS") == "mock" or not shutil.which("unshare"):
        return None
    candidates = [("unshare", "-m"), ("unshare", "-Urm")] if os.geteuid() == 0 else \
        [("unshare", "-Urm")]
    probe = "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d && umount $d && rmdir $d"
    for prefix in candidates:
        if subprocess.run([*prefix, "sh", "-c", probe], capture_output=True).returncode == 0:
            return prefix
    return None


def run_readonly(ro: Path, args: list, monkeypatch) -> tuple[int, str]:
    """``rnnlab ARGS`` with the folder ``ro`` unwritable, for real where possible."""
    args = [str(a) for a in args]
    if os.geteuid() != 0 and os.environ.get("RNNLAB_TEST_FAULTS") != "mock":
        dirs = [ro, *[p for p in ro.rglob("*") if p.is_dir()]]
        for d in dirs:
            d.chmod(0o555)
        try:
            r = subprocess.run([sys.executable, "-m", "rnnlab", *args], env=ENV,
                               capture_output=True, text=True)
        finally:
            for d in dirs:
                d.chmod(0o755)
        return r.returncode, r.stderr
    prefix = namespace_prefix()
    if prefix is not None:  # a read-only bind mount of the folder over itself
        script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
        r = subprocess.run([*prefix, "sh", "-c", script, str(ro), sys.executable, "-m",
                            "rnnlab", *args], env=ENV, capture_output=True, text=True)
        return r.returncode, r.stderr
    deny_writes(monkeypatch, ro)  # the fallback: a mock at the open level
    r = cli(*args)
    monkeypatch.undo()
    return r.exit_code, r.stderr


def deny_writes(monkeypatch, root: Path) -> None:
    root_s = str(root.resolve())

    def inside(p) -> bool:
        return isinstance(p, (str, os.PathLike)) and \
            os.path.abspath(os.fspath(p)).startswith(root_s)

    def refuse(p):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(p))

    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir

    def fake_open(file, mode="r", *a, **k):
        if inside(file) and any(c in mode for c in "wax+"):
            refuse(file)
        return real_open(file, mode, *a, **k)

    def fake_os_open(path, flags, *a, **k):
        if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            refuse(path)
        return real_os_open(path, flags, *a, **k)

    def fake_mkdir(path, *a, **k):
        if inside(path):
            refuse(path)
        return real_mkdir(path, *a, **k)

    for mod in (builtins, io):
        monkeypatch.setattr(mod, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)


# ---- one writer per run directory ----------------------------------------------------------

def test_a_second_writer_is_refused_naming_the_holder(corpus, tmp_path):
    out = tmp_path / "run"
    a = start("train", "--text", corpus, *TINY, "--steps", 100000, "--checkpoint-every", 5,
              "--out", out)
    try:
        wait_for(lambda: len(metric_lines(out)) >= 2, a)
        for args in (["train", "--text", corpus, *TINY, "--seed", 2, "--out", out],
                     ["train", "--resume", out, "--quiet"]):
            r = cli(*args)
            one_error_line(r.stderr, r.exit_code, f"{out} is in use", f"pid {a.pid} on ")
        a.send_signal(signal.SIGTERM)
        assert a.wait(60) == 143
    finally:
        a.kill()
    lines = metric_lines(out)
    n = lines[-1]["step"]
    assert [m["step"] for m in lines] == list(range(1, n + 1))  # one writer: nothing mixed
    assert json.loads((out / "config.json").read_text())["train"]["seed"] == 3
    assert checkpoint.load(out / "last.pt")["step"] == n
    assert not (out / ".lock").exists()
    assert_resumes_exactly(out, n + 3, tmp_path)


def test_a_stale_lock_of_a_dead_process_is_reported_and_taken_over(corpus, tmp_path):
    out = tmp_path / "run"
    a, _, _ = stopped_run(corpus, out, 1, lambda: (out / "last.pt").exists(), signal.SIGKILL)
    assert str(a.pid) in (out / ".lock").read_text()  # left behind by the killed process
    step = checkpoint.load(out / "last.pt")["step"]
    r = cli("train", "--resume", out, "--steps", step + 2, "--quiet")
    assert r.exit_code == 0, r.output
    assert f"stale lock from pid {a.pid}" in r.stderr and "taking it over" in r.stderr
    assert not (out / ".lock").exists()
    assert_resumes_exactly(out, step + 4, tmp_path)


def test_a_new_run_into_a_folder_with_metrics_but_no_checkpoint_is_refused(corpus, tmp_path):
    out = tmp_path / "run"
    stopped_run(corpus, out, 100000, lambda: len(metric_lines(out)) >= 2, signal.SIGKILL)
    assert not (out / "last.pt").exists()
    before = (out / "metrics.jsonl").read_bytes()
    r = cli("train", "--text", corpus, *TINY, "--out", out)
    one_error_line(r.stderr, r.exit_code, "config.json, metrics.jsonl of an earlier run",
                   "stopped before its first checkpoint")
    assert (out / "metrics.jsonl").read_bytes() == before  # nothing appended
    r = cli("train", "--resume", out, "--quiet")
    one_error_line(r.stderr, r.exit_code, "no checkpoint")


# ---- resume: the checkpoint must be the run's; metrics kept ---------------------------------

def _tiny_run(corpus, out, hidden=8, steps=6):
    r = cli("train", "--text", corpus, *TINY, "--hidden-size", hidden, "--steps", steps,
            "--checkpoint-every", 2, "--out", out)
    assert r.exit_code == 0, r.output


def test_resume_refuses_a_checkpoint_of_another_run(corpus, tmp_path):
    mine, other = tmp_path / "mine", tmp_path / "other"
    _tiny_run(corpus, mine, hidden=16)
    _tiny_run(corpus, other, hidden=8)
    own = (mine / "last.pt").read_bytes()
    shutil.copy(other / "last.pt", mine / "last.pt")  # a foreign last.pt
    before = snapshot(mine)
    r = cli("train", "--resume", mine, "--steps", 10, "--quiet")
    one_error_line(r.stderr, r.exit_code, "does not belong to the run",
                   "model.hidden_size (16 vs 8)", "nothing was changed")
    assert snapshot(mine) == before  # config.json not rewritten, metrics not cut
    # the same config but weights of the wrong shape: refused by the shape check
    payload = checkpoint.load(mine / "last.pt")
    payload.update(config=json.loads((mine / "config.json").read_text()))
    checkpoint.save(mine / "last.pt", {k: v for k, v in payload.items()
                                       if k not in ("format", "version")})
    r = cli("train", "--resume", mine, "--steps", 10, "--quiet")
    one_error_line(r.stderr, r.exit_code, "do not fit the run's model", "weight_hh_l0")
    (mine / "last.pt").write_bytes(own)
    assert_resumes_exactly(mine, 10, tmp_path)


def test_resume_sets_later_and_torn_metrics_aside_and_keeps_every_good_line(
        corpus, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_step = train.Trainer.train_step

    def crash_in_step_15(self):
        if self.step == 14:
            raise KeyboardInterrupt  # the process dies inside step 15
        return real_step(self)

    monkeypatch.setattr(train.Trainer, "train_step", crash_in_step_15)
    cfg = runs.new_config("text", {"path": str(corpus), "seq_len": 8},
                          {"backbone": "lstm", "hidden_size": 8, "num_layers": 1}, steps=30,
                          batch_size=2, eval_every=1000, checkpoint_every=10, seed=3,
                          decay="none")
    with pytest.raises(KeyboardInterrupt):
        runs.train_run(out, cfg, progress=False)
    monkeypatch.undo()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 14 and checkpoint.load(out / "last.pt")["step"] == 10
    torn = lines[4][: len(lines[4]) // 2]  # a crash mid-write of the line of step 5
    (out / "metrics.jsonl").write_text("\n".join(lines[:4] + [torn] + lines[5:]) + "\n")
    r = cli("train", "--resume", out, "--steps", 12, "--quiet")
    assert r.exit_code == 0, r.output
    assert "moved 4 line(s) after step 10 (the checkpoint's) and 1 torn line(s)" in r.stderr
    aside = (out / "metrics.set-aside-10.jsonl").read_text().splitlines()
    assert aside == lines[10:] + [torn]  # nothing deleted: set aside
    kept = [m["step"] for m in metric_lines(out)]
    assert kept == [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12]  # every good line kept
    ref = tmp_path / "ref"
    cfg = json.loads((out / "config.json").read_text())
    cfg["train"]["steps"] = 12
    runs.train_run(ref, cfg, progress=False)
    a, b = checkpoint.load(ref / "last.pt")["model"], checkpoint.load(out / "last.pt")["model"]
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6)
    assert json.loads((out / "config.json").read_text())["train"]["steps"] == 30  # as created


# ---- signals ---------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_finish_the_step_checkpoint_and_say_how_to_resume(
        corpus, tmp_path, sig):
    out = tmp_path / "run"
    _, rc, err = stopped_run(corpus, out, 1000, lambda: len(metric_lines(out)) >= 3, sig)
    assert rc == 128 + sig  # 143 for SIGTERM, 129 for SIGHUP
    n = metric_lines(out)[-1]["step"]
    assert checkpoint.load(out / "last.pt")["step"] == n  # nothing lost
    assert f"stopped by {signal.Signals(sig).name} at step {n}: checkpoint saved " \
           f"({out / 'last.pt'}); continue with: rnnlab train --resume {out}" in err
    assert "Traceback" not in err
    assert_resumes_exactly(out, n + 3, tmp_path)


def test_a_signal_before_training_starts_is_one_line(corpus, tmp_path, monkeypatch):
    real = runs.new_config

    def slow_start(*a, **k):  # SIGTERM arrives while the run is being set up
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **k)

    monkeypatch.setattr(runs, "new_config", slow_start)
    before = signal.getsignal(signal.SIGTERM)
    r = cli("train", "--text", corpus, *TINY, "--out", tmp_path / "run")
    assert r.exit_code == 143
    assert r.stderr.strip() == "error: stopped by SIGTERM before training started: no " \
                               "checkpoint yet, nothing to resume"
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored
    assert not (tmp_path / "run").exists()


# ---- a full disk -----------------------------------------------------------------------------

FILL = """import os, sys
path, keep = sys.argv[1], int(sys.argv[2])
st = os.statvfs(os.path.dirname(path))
left = st.f_bavail * st.f_frsize - keep
with open(path, "wb") as f:
    while left > 0:
        n = min(left, 1 << 20)
        f.write(bytes(n))
        left -= n
"""


def test_disk_full_names_the_path_loses_nothing_and_resumes_exactly(corpus, tmp_path,
                                                                     monkeypatch):
    out_args = ["--hidden-size", "32", "--checkpoint-every", "5"]
    args = ["train", "--text", corpus, *TINY, *out_args, "--steps", 10]
    prefix = namespace_prefix()
    saved = tmp_path / "saved"
    saved.mkdir()
    if prefix is not None:  # a real full disk: a 2 MiB tmpfs, filled up but for 24 KiB
        disk = tmp_path / "disk"
        disk.mkdir()
        (tmp_path / "fill.py").write_text(FILL)
        rnnlab = f"{sys.executable} -m rnnlab"
        script = f"""
mount -t tmpfs -o size=2m tmpfs {disk} || exit 99
{rnnlab} {' '.join(map(str, args))} --out {disk}/run >/dev/null 2>{saved}/err1 || exit 98
cp -a {disk}/run {saved}/before
{sys.executable} {tmp_path}/fill.py {disk}/filler 24576
{rnnlab} train --resume {disk}/run --steps 20 --quiet >/dev/null 2>{saved}/err2
echo $? >{saved}/rc2
cp -a {disk}/run {saved}/after
{rnnlab} study params --quick --out {disk}/study >/dev/null 2>{saved}/err-study
echo $? >{saved}/rc-study
rm {disk}/filler
{rnnlab} train --resume {disk}/run --steps 20 --quiet >/dev/null 2>{saved}/err3
echo $? >{saved}/rc3
cp -a {disk}/run {saved}/final
"""
        r = subprocess.run([*prefix, "sh", "-c", script], env=ENV, capture_output=True,
                           text=True)
        assert r.returncode == 0, (r.returncode, r.stderr, (saved / "err1").read_text())
        run_dir = disk / "run"
        rc2, err2 = int((saved / "rc2").read_text()), (saved / "err2").read_text()
        rc_study = int((saved / "rc-study").read_text())
        err_study = (saved / "err-study").read_text()
        assert int((saved / "rc3").read_text()) == 0, (saved / "err3").read_text()
        before, after, final = saved / "before", saved / "after", saved / "final"
    else:  # the fallback: every atomic write (checkpoints, results) fails with ENOSPC
        run_dir = before = tmp_path / "run"
        assert cli(*args, "--out", run_dir).exit_code == 0
        shutil.copytree(run_dir, saved / "before")
        before = saved / "before"

        class Full(io.RawIOBase):
            def writable(self):
                return True

            def write(self, b):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: (os.close(fd), Full())[1])
        r = cli("train", "--resume", run_dir, "--steps", 20, "--quiet")
        rc2, err2 = r.exit_code, r.stderr
        r = cli("study", "params", "--quick", "--out", tmp_path / "study")
        rc_study, err_study = r.exit_code, r.stderr
        monkeypatch.undo()
        after = saved / "after"
        shutil.copytree(run_dir, after)
        r = cli("train", "--resume", run_dir, "--steps", 20, "--quiet")
        assert r.exit_code == 0, r.output
        final = run_dir
    one_error_line(err2, rc2, f"cannot write {run_dir / 'last.pt'}: no space left on device",
                   f"the last checkpoint ({run_dir / 'last.pt'}, step 10) and everything "
                   "written before are intact", f"free some space, then continue with "
                   f"--resume {run_dir}")
    one_error_line(err_study, rc_study, "no space left on device", "cannot write")
    # nothing already written was lost
    assert (after / "config.json").read_bytes() == (before / "config.json").read_bytes()
    assert (after / "last.pt").read_bytes() == (before / "last.pt").read_bytes()
    assert (after / "metrics.jsonl").read_bytes().startswith(
        (before / "metrics.jsonl").read_bytes())
    assert not [p for p in after.iterdir() if p.name.endswith(".tmp") or p.name == ".lock"]
    # and, space freed, it resumed exactly
    cfg = json.loads((before / "config.json").read_text())
    cfg["train"]["steps"] = 20
    runs.train_run(tmp_path / "ref", cfg, progress=False)
    a = checkpoint.load(tmp_path / "ref" / "last.pt")["model"]
    b = checkpoint.load(final / "last.pt")["model"]
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6)
    assert [m["step"] for m in metric_lines(final)] == list(range(1, 21))


# ---- an unwritable folder ------------------------------------------------------------------

def test_an_unwritable_folder_is_one_line_naming_it_and_nothing_is_lost(corpus, tmp_path,
                                                                        monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    run_dir = ro / "run"
    _tiny_run(corpus, run_dir, steps=4)
    before = snapshot(run_dir)
    cases = [
        (["train", "--text", corpus, *TINY, "--out", ro / "new"], f"{ro / 'new'}"),
        (["train", "--resume", run_dir, "--steps", 6, "--quiet"], f"{run_dir / '.lock'}"),
        (["inspect", run_dir], f"{run_dir / 'figures'}"),
        (["study", "params", "--quick", "--out", ro / "study"], f"{ro / 'study'}"),
    ]
    for args, path in cases:
        rc, err = run_readonly(ro, args, monkeypatch)
        line = one_error_line(err, rc, path)
        assert "permission denied" in line or "read-only file system" in line, line
    assert snapshot(run_dir) == before and not (ro / "new").exists()
    assert_resumes_exactly(run_dir, 6, tmp_path)


def test_out_under_a_file_is_one_line(corpus, tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    for args in (["train", "--text", corpus, *TINY, "--out", f / "run"],
                 ["study", "params", "--quick", "--out", f / "sub" / "study"]):
        r = cli(*args)
        one_error_line(r.stderr, r.exit_code, f"cannot be created: {f} is a file, not a folder")
    assert f.read_text() == "x"


# ---- bad numbers -----------------------------------------------------------------------------

BIG = "99999999999999999999"


def test_nan_inf_and_absurd_numbers_are_one_line_and_write_nothing(corpus, tmp_path):
    _tiny_run(corpus, tmp_path / "run")
    run_dir = tmp_path / "run"
    out = tmp_path / "never"
    train_cases = [
        (["--weight-decay", "nan"], "weight_decay"), (["--clip", "nan"], "clip"),
        (["--lr", "inf"], "lr"), (["--forget-bias", "nan"], "forget_bias"),
        (["--forget-bias", "inf"], "forget_bias"), (["--dropout", "nan"], "dropout"),
        (["--time-budget", "nan"], "--time-budget"), (["--seed", BIG], "--seed"),
        (["--hidden-size", BIG], "hidden_size"), (["--batch-size", BIG], None),
        (["--steps", BIG], "steps"), (["--seq-len", BIG], "seq_len"),
    ]
    for args, what in train_cases:
        r = cli("train", "--text", corpus, *TINY, *args, "--out", out)
        one_error_line(r.stderr, r.exit_code, *([what] if what else []))
        assert not out.exists(), args
    other = [
        (["sample", run_dir, "--seed", BIG], "--seed"),
        (["sample", run_dir, "--length", BIG], "--length"),
        (["sample", run_dir, "--temperature", "nan"], "temperature"),
        (["sample", run_dir, "--top-p", "nan"], "top-p"),
        (["evaluate", run_dir, "--batches", BIG], "--batches"),
        (["inspect", run_dir, "--seed", BIG], "--seed"),
        (["inspect", run_dir, "--batch-size", "1e20"], "--batch-size"),
        (["study", "params", "--seed", BIG, "--out", out], "--seed"),
        (["study", "params", "--quick", "--full", "--out", out], "--quick and --full"),
    ]
    for args, what in other:
        r = cli(*args)
        one_error_line(r.stderr, r.exit_code, what)
    assert not out.exists()


def test_a_model_or_batch_beyond_memory_is_refused_before_allocating(corpus, tmp_path):
    out = tmp_path / "huge"
    for args, what in ((["--hidden-size", "100000"], "parameters"),
                       (["--batch-size", "1000000000"], "batch 1000000000 × 8 steps")):
        r = cli("train", "--text", corpus, *TINY, *args, "--out", out)
        line = one_error_line(r.stderr, r.exit_code, "needs about", "of memory", what,
                              "free; use a smaller")
        assert not out.exists(), line
    _tiny_run(corpus, tmp_path / "run")
    r = cli("inspect", tmp_path / "run", "--batch-size", "1000000000000")
    one_error_line(r.stderr, r.exit_code, "needs about", "use a smaller --batch-size")


# ---- evaluate --text: what it could not read -------------------------------------------------

def test_evaluate_text_refuses_a_text_it_mostly_cannot_read(corpus, tmp_path):
    _tiny_run(corpus, tmp_path / "run")
    p = tmp_path / "greek.txt"
    p.write_text("ROM" + "αβγδεζηθ" * 100, encoding="utf-8")  # 800 of 803 characters unseen
    r = cli("evaluate", tmp_path / "run", "--text", p, "--json")
    one_error_line(r.stderr, r.exit_code, "800 of the text's 803 tokens (99.6%)",
                   "--max-unseen 10%")
    r = cli("evaluate", tmp_path / "run", "--text", p, "--json", "--max-unseen", "1")
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["unseen_tokens"] == 800 and m["unseen_fraction"] == pytest.approx(800 / 803)
    assert m["tokens"] == 2


# ---- output that is not a terminal -----------------------------------------------------------

def test_train_progress_reaches_a_pipe_at_once_and_then_every_few_seconds(corpus, tmp_path):
    out = tmp_path / "run"
    a = subprocess.Popen([sys.executable, "-m", "rnnlab", "train", "--text", str(corpus),
                          *[t for t in TINY if t != "--quiet"], "--steps", "100000",
                          "--out", str(out)], env=ENV, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)  # `2>&1 | tee log`: a pipe
    try:
        first = a.stderr.readline()
        assert a.poll() is None  # still training: the line came while it runs
        assert first.startswith("train 0/100000  started (a line every 10 s)"), first
    finally:
        a.send_signal(signal.SIGTERM)
        a.wait(60)
        a.kill()


def test_plain_progress_lines_every_n_seconds_with_steps_loss_rate_eta(monkeypatch, capsys):
    now = [100.0]
    monkeypatch.setattr(console.time, "perf_counter", lambda: now[0])
    with console.Progress(100, "train", every=10) as p:
        for step in range(1, 31):
            now[0] += 1.0  # one step a second
            p.update(step, f"loss {3 - step / 100:.3f}")
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("train 0/100  started")
    assert lines[1] == "train 10/100  loss 2.900  1.00 step/s  elapsed 0:00:10  eta 0:01:30"
    assert [x.split()[1] for x in lines[1:]] == ["10/100", "20/100", "30/100", "30/100"]


def test_sample_streams_its_text_as_it_is_produced(corpus, tmp_path):
    _tiny_run(corpus, tmp_path / "run")
    a = subprocess.Popen([sys.executable, "-m", "rnnlab", "sample", str(tmp_path / "run"),
                          "--length", str(10**7), "--seed", "1"], env=ENV,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        got = a.stdout.read(200)
        assert len(got) == 200 and a.poll() is None  # 200 bytes out of 10^7, still running
    finally:
        a.kill()
        a.wait(30)
