"""The benchmark scripts run end to end on tiny shapes (their numbers are not asserted: speed is
reported by running them, never tested)."""

import importlib.util
from pathlib import Path

import pytest
import torch

from rnnlab import gemm

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_speed_prints_every_column(capsys):
    _load("speed").main(["--modes", "LSTM,GRU", "--sizes", "8", "--steps", "3", "--batch", "2",
                         "--repeats", "1"])
    out = capsys.readouterr().out
    for text in ("LSTM H=8", "GRU H=8", "ratio", "engine", "traced", "native", "Python",
                 "GEMMs alone", "large GEMM"):
        assert text in out


@pytest.mark.parametrize("mode,chunks", [("LSTM", 4), ("GRU", 3), ("RNN", 1)])
def test_gemms_alone_makes_the_engines_products(mode, chunks, monkeypatch):
    """The floor times exactly the products the engine makes: 1 projection, T + T per-step
    products, then ∂L/∂x and the two weight gradients, with the engine's shapes."""
    T, B, I, H = 5, 3, 4, 6
    calls = []
    real_linear, real_t, real_adder = gemm.linear, gemm.t_matmul, gemm.adder
    monkeypatch.setattr(gemm, "linear", lambda x, w, b=None: calls.append(
        ("linear", tuple(x.shape), tuple(w.shape))) or real_linear(x, w, b))
    monkeypatch.setattr(gemm, "t_matmul", lambda a, b: calls.append(
        ("t_matmul", tuple(a.shape), tuple(b.shape))) or real_t(a, b))

    def adder(w, small=False):
        f = real_adder(w, small)
        return lambda y, x: calls.append(("step", tuple(x.shape), tuple(w.shape))) or f(y, x)
    monkeypatch.setattr(gemm, "adder", adder)
    _load("speed").gemms_alone(mode, I, H, B, T, torch.device("cpu"))()
    G = chunks * H
    assert calls[0] == ("linear", (T * B, I), (G, I))
    assert calls[1 : 1 + T] == [("step", (B, H), (G, H))] * T
    assert calls[1 + T : 1 + 2 * T] == [("step", (B, G), (H, G))] * T
    assert calls[1 + 2 * T :] == [("linear", (T * B, G), (I, G)),
                                  ("t_matmul", (T * B, G), (T * B, I)),
                                  ("t_matmul", (T * B, G), (T * B, H))]


def test_memory_runs(capsys):
    _load("memory").main(["--sizes", "8", "--steps", "3", "--batch", "2"])
    assert "LSTM" in capsys.readouterr().out



def test_scan_benchmark_prints_every_layer(capsys):
    _load("scan").main(["--steps", "3", "--batch", "2", "--hidden", "4", "--repeats", "1"])
    out = capsys.readouterr().out
    for text in ("MinGRU", "MinLSTM", "LRU", "seq / par", "linear scan"):
        assert text in out


def test_trace_overhead_runs(capsys):
    _load("trace_overhead").main(["--every", "2", "--steps", "4", "--hidden", "8", "--layers",
                                  "1", "--batch", "2", "--seq-len", "6", "--repeats", "1"])
    out = capsys.readouterr().out
    for text in ("trace_every", "overhead", "traced step cost"):
        assert text in out


def test_executors_benchmark_prints_every_arm(capsys, tmp_path):
    from rnnlab import studies
    studies.run_all("quick", out=tmp_path, only=["params"], workers=1)
    bench = _load("executors")
    out = bench.main(["--study", "params", "--profile", "quick", "--arms", "local1",
                      "--full-workers", "2", "--calibrate", str(tmp_path)])
    text = capsys.readouterr().out
    for s in ("params (quick): 1 runs", "local", "identical numbers", "study all --full",
              "params 0.", "2 workers"):
        assert s in text
    assert out["identical"] and out["tasks"] == 1 and out["full_estimate_s"][2] > 0
    assert bench.makespan([4, 1, 1, 1, 1], 2) == 4
    assert bench.makespan([3, 3, 2, 2, 2], 2) == 7  # largest first, as the runner
