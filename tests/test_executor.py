"""Study runs as units: specs, the local pool, failures, and results that do not depend on the
number of workers."""

import json
import pickle

import pytest

from rnnlab import report, studies
from rnnlab.errors import UserError
from rnnlab.studies import executor, forget_bias
from rnnlab.studies.executor import RunSpec
from rnnlab.studies.runner import untimed


def test_a_run_spec_is_small_picklable_and_json():
    spec = forget_bias.plan("quick", [0, 1])[0]
    assert isinstance(spec, RunSpec) and spec.study == "forget-bias" and spec.seed == 0
    assert pickle.loads(pickle.dumps(spec)) == spec
    json.dumps(spec.to_dict())
    assert spec.key == f"forget-bias/{spec.arm}/seed-0"


def test_results_do_not_depend_on_the_number_of_workers(tmp_path):
    only = ["forget-bias", "gradflow"]
    one = studies.run_all("quick", out=tmp_path / "one", only=only, workers=1)
    two = studies.run_all("quick", out=tmp_path / "two", only=only, workers=2)
    for name in only:
        a = json.loads((tmp_path / "one" / name / "results.json").read_text())
        b = json.loads((tmp_path / "two" / name / "results.json").read_text())
        assert untimed(a) == untimed(b), name
        assert untimed(one[name]) == untimed(a)
    assert two["forget-bias"]["environment"]["workers"] == 2
    # paired arms: the same initial weights within a seed, different ones across seeds
    pairing = one["forget-bias"]["data"]["pairing"]
    assert pairing == {"equal_within_seed": True, "distinct_across_seeds": True}
    fps = {(r["arm"], r["seed"]): r["init_fingerprint"] for r in one["forget-bias"]["runs"]}
    assert fps[("bias-0", 0)] == fps[("bias-1", 0)] != fps[("bias-0", 1)] == fps[("bias-1", 1)]
    assert all(r["cpu_s"] >= 0 and r["wall_s"] > 0 for r in one["forget-bias"]["runs"])


def test_a_failed_run_is_recorded_and_the_others_are_kept(tmp_path, monkeypatch):
    real = forget_bias.run_one

    def flaky(spec):
        if spec.arm == "bias-1" and spec.seed == 1:
            raise RuntimeError("boom")
        return real(spec)

    monkeypatch.setattr(forget_bias, "run_one", flaky)
    doc = studies.run("forget-bias", profile="quick", out=tmp_path, workers=1)
    failed = [r for r in doc["runs"] if r["status"] == "failed"]
    assert len(failed) == 1 and "RuntimeError: boom" in failed[0]["error"]
    assert sum(r["status"] == "ok" for r in doc["runs"]) == 4  # 2 arms × 2 seeds + the RNN
    touched = [c for c in doc["claims"] if "bias-1" in c["arms"]]
    assert touched and all(c["verdict"] == "inconclusive" and "boom" in c["why"]
                           for c in touched)
    html = report.write_report(tmp_path).read_text()
    assert "boom" in html


def test_executor_registry_and_errors(tmp_path):
    with pytest.raises(UserError):
        executor.get("nosuch")
    with pytest.raises(UserError):
        executor.get("local", workers=0)
    assert executor.get("local", workers=3).workers == 3
    assert executor.get("local").workers == executor.default_workers()

    class Reversed(executor.Executor):  # another backend: runs the specs in reverse order
        name = "reversed"

        def __init__(self, workers=None):
            self.workers = 1

        def map(self, fn, specs, on_done=None):
            out = {}
            for i in reversed(range(len(specs))):
                out[i] = fn(specs[i])
                if on_done:
                    on_done(i, out[i])
            return [out[i] for i in range(len(specs))]

    executor.register("reversed", Reversed)
    try:
        a = studies.run("params", profile="quick", out=tmp_path / "a", executor="reversed")
        b = studies.run("params", profile="quick", out=tmp_path / "b")
    finally:
        executor.EXECUTORS.pop("reversed")
    assert a["environment"]["executor"] == "reversed"
    assert untimed(a) == untimed(b)
