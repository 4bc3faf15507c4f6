"""The Ray executor against a real local Ray (one per module, 2 CPUs): the same numbers as the
local pool, a failing run retried once then recorded, a lost worker retried, the resume cache
(both executors), Ctrl-C leaving no Ray process behind, and a one-line error without Ray."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import rnnlab
from rnnlab import studies
from rnnlab.errors import UserError
from rnnlab.studies import executor
from rnnlab.studies.runner import run_studies, untimed

TESTS = Path(__file__).resolve().parent
SRC = Path(rnnlab.__file__).resolve().parents[1]  # the rnnlab the workers must import too
FAKE = "fakes.study"


def _pythonpath() -> str:
    old = os.environ.get("PYTHONPATH")
    return os.pathsep.join([str(SRC), str(TESTS), *([old] if old else [])])


def descendants(pid: int) -> dict[int, str]:
    """{pid: name} of every process below ``pid`` (psutil, or /proc without it)."""
    try:
        import psutil
        return {p.pid: p.name() for p in psutil.Process(pid).children(recursive=True)}
    except ImportError:
        pass
    parent, name = {}, {}
    for d in Path("/proc").iterdir():
        try:
            stat = (d / "stat").read_text()
        except (OSError, ValueError):
            continue
        if d.name.isdigit():
            name[int(d.name)] = stat[stat.index("(") + 1 : stat.rindex(")")]
            parent[int(d.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found, frontier = {}, [pid]
    while frontier:
        p = frontier.pop()
        for c, pp in parent.items():
            if pp == p and c not in found:
                found[c] = name[c]
                frontier.append(c)
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


# ---- without a Ray of this process (first: no module Ray running yet) ------------------------

def test_ctrl_c_cancels_the_tasks_and_leaves_no_ray_process(tmp_path):
    pytest.importorskip("ray")
    env = {**os.environ, "PYTHONPATH": _pythonpath()}
    proc = subprocess.Popen([sys.executable, "-m", "rnnlab", "study", "regimes", "--executor",
                             "ray", "--workers", "2", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while not any("tasks" in ln for ln in lines) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert any("Ray (local): 2 CPUs" in ln for ln in lines), lines
    while time.monotonic() < deadline:  # until a worker runs a task (its title says so)
        below = descendants(proc.pid)
        if any("run_task" in n for n in below.values()):
            break
        time.sleep(0.2)
    assert any("raylet" in n for n in below.values()) and any(
        "run_task" in n for n in below.values()), below
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=60)
    reader.join(timeout=10)
    assert rc == 130, lines
    assert lines[-1].strip() == "error: aborted"
    for _ in range(100):  # gone within 10 s
        left = {p: n for p, n in below.items() if alive(p)}
        if not left:
            break
        time.sleep(0.1)
    assert not left, f"left behind: {left}"
    assert not (tmp_path / "results.json").exists()


def test_without_ray_the_executor_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(UserError, match=r"pip install -e '\.\[ray\]'"):
        executor.get("ray")
    code = ("import sys; sys.modules['ray'] = None; from rnnlab.cli import main; "
            f"main(['study', 'params', '--executor', 'ray', '--out', {str(tmp_path)!r}])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": _pythonpath()})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: the ray executor needs Ray; install it with: pip install -e '.[ray]'"]


# ---- with one local Ray for the rest of the module -------------------------------------------

@pytest.fixture(scope="module")
def local_ray():
    """A local Ray (2 CPUs) whose workers import this rnnlab and the fake study."""
    ray = pytest.importorskip("ray")
    import logging
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR,
             runtime_env={"env_vars": {"PYTHONPATH": _pythonpath()}})
    yield ray
    ray.shutdown()


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """The fake study; ``fake.ARMS`` is set by the test (before planning)."""
    monkeypatch.syspath_prepend(str(TESTS))
    from fakes import study
    monkeypatch.setattr(study, "ARMS", dict(study.ARMS))
    return study


def _executions(log: Path) -> list[str]:
    return sorted(log.read_text().splitlines()) if log.exists() else []


def test_ray_and_local_give_identical_numbers(tmp_path, local_ray):
    local = studies.run("regimes", profile="quick", out=tmp_path / "local", workers=1)
    ray = studies.run("regimes", profile="quick", out=tmp_path / "ray", executor="ray")
    a = json.loads((tmp_path / "local" / "results.json").read_text())
    b = json.loads((tmp_path / "ray" / "results.json").read_text())
    assert untimed(a) == untimed(b) and untimed(local) == untimed(a)
    assert all(r["status"] == "ok" for r in b["runs"]) and len(b["runs"]) == 32
    env = ray["environment"]
    assert env["executor"] == "ray" and env["cluster_cpus"] == 2 and env["workers"] == 2


def test_a_failing_run_is_retried_once_then_recorded_and_the_others_kept(tmp_path, local_ray,
                                                                       fake):
    log = tmp_path / "executions.log"
    fake.ARMS = {"good": {"value": 1.0, "log": str(log)}, "bad": {"fail": True, "log": str(log)}}
    doc = run_studies([FAKE], "quick", out=tmp_path, nested=False, executor="ray")[FAKE]
    assert _executions(log) == ["bad 0", "bad 0", "bad 1", "bad 1", "good 0", "good 1"]
    status = {(r["arm"], r["seed"]): r["status"] for r in doc["runs"]}
    assert status == {("good", 0): "ok", ("good", 1): "ok", ("bad", 0): "failed",
                      ("bad", 1): "failed"}
    bad = [r for r in doc["runs"] if r["arm"] == "bad"]
    assert all("RuntimeError: boom in bad" in r["error"] and "retried once" in r["error"]
               for r in bad)
    verdict = {c["id"]: (c["verdict"], c["why"]) for c in doc["claims"]}
    assert verdict["good_positive"][0] == "holds"
    assert verdict["bad_positive"][0] == "inconclusive" and "boom" in verdict["bad_positive"][1]
    cached = sorted(p.name.split("-")[0] for p in (tmp_path / "runs").iterdir())
    assert cached == ["good", "good"]  # failed runs are not cached


def test_a_lost_worker_is_retried(tmp_path, local_ray, fake):
    log = tmp_path / "executions.log"
    fake.ARMS = {"crashy": {"crash_once": str(tmp_path / "crashed"), "log": str(log)}}
    doc = run_studies([FAKE], "quick", out=tmp_path, nested=False, executor="ray")[FAKE]
    assert [r["status"] for r in doc["runs"]] == ["ok", "ok"]
    assert [r["init_fingerprint"] for r in doc["runs"]] == ["0", "1"]
    assert _executions(log) == ["crashy 0", "crashy 0", "crashy 1", "crashy 1"]
    assert (tmp_path / "crashed-0").exists() and (tmp_path / "crashed-1").exists()


@pytest.mark.parametrize("name", ["local", "ray"])
def test_the_resume_cache_skips_finished_runs_and_reruns_a_changed_setting(tmp_path, local_ray,
                                                                          fake, name):
    log = tmp_path / "executions.log"
    fake.ARMS = {"a": {"value": 1.0, "log": str(log)}, "b": {"value": 1.0, "log": str(log)}}
    go = lambda: run_studies([FAKE], "quick", out=tmp_path, nested=False, executor=name,
                             workers=1)[FAKE]
    first = go()
    assert len(_executions(log)) == 4 and len(list((tmp_path / "runs").iterdir())) == 4
    again = go()
    assert len(_executions(log)) == 4  # nothing ran again
    assert json.loads((tmp_path / "session.json").read_text())["cached_runs"] == 4
    assert again["runs"] == first["runs"]  # the cached results, timings included
    fake.ARMS["b"] = {"value": 3.0, "log": str(log)}
    changed = go()
    assert _executions(log) == ["a 0", "a 1", "b 0", "b 0", "b 1", "b 1"]
    assert [r["value"] for r in changed["runs"] if r["arm"] == "b"] == [3.0, 3.0]
    assert json.loads((tmp_path / "session.json").read_text())["cached_runs"] == 2


def test_an_edit_to_rnnlab_runs_everything_again(tmp_path, fake, monkeypatch):
    """The cache key holds the digest of rnnlab's sources: edited code never reuses old runs."""
    from rnnlab.studies import cache

    log = tmp_path / "executions.log"
    fake.ARMS = {"a": {"value": 1.0, "log": str(log)}}
    go = lambda: run_studies([FAKE], "quick", out=tmp_path, nested=False, executor="local",
                             workers=1)
    go()
    assert len(_executions(log)) == 2
    assert cache.source_digest() == cache.source_digest.__wrapped__()  # the files as they are
    monkeypatch.setattr(cache, "source_digest", lambda: "edited")
    go()
    assert len(_executions(log)) == 4
