"""Choosing, building and falling back from the native CPU kernels (rnnlab.native). Their numbers
are tested against torch.nn and autograd by the layer, cell and telemetry tests, which run on
both engine paths (conftest's ``kernels`` fixture)."""

from __future__ import annotations

import threading

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnlab
from rnnlab import engine, native


def _train_step(mode="LSTM"):
    """Outputs and every gradient of a packed, bidirectional, 2-layer, traced step (float64)."""
    torch.manual_seed(3)
    layer = getattr(rnnlab, mode)(3, 5, num_layers=2, bidirectional=True, dtype=torch.float64)
    x = torch.randn(6, 4, 3, dtype=torch.float64, requires_grad=True)
    with rnnlab.trace(layer) as tr:
        out, _ = layer(pack_padded_sequence(x, torch.tensor([6, 2, 5, 3]), enforce_sorted=False))
        out.data.square().sum().backward()
    return [out.data, x.grad, *(p.grad for p in layer.parameters()), tr.grad_h,
            *(v for g in tr.gates.values() for v in g.values())]


def _fresh(monkeypatch, tmp_path, compile_fn):
    """A process that has not tried the kernels yet, an empty cache, and ``compile_fn``."""
    monkeypatch.setattr(native, "_state", native._State())
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(native, "_compile", compile_fn)


def test_choice_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(native.ENV, raising=False)
    assert native.choice() == "auto"
    for value in ("auto", "native", "python", " Python "):
        monkeypatch.setenv(native.ENV, value)
        assert native.choice() == value.strip().lower()
    monkeypatch.setenv(native.ENV, "fast")
    with pytest.raises(ValueError, match="RNNLAB_KERNELS='fast'.*auto, native, python"):
        native.choice()


def test_only_cpu_float_tensors_go_native(monkeypatch):
    monkeypatch.setenv(native.ENV, "python")
    assert native.kernel_for(torch.zeros(1)) is None
    monkeypatch.setenv(native.ENV, "native")
    for x in (torch.zeros(1, device="meta"), torch.zeros(1, dtype=torch.float16),
              torch.zeros(1, dtype=torch.bfloat16)):
        assert native.kernel_for(x) is None


def test_without_a_compiler_the_python_engine_runs_and_says_so_once(monkeypatch, tmp_path,
                                                                    capsys):
    monkeypatch.setenv(native.ENV, "python")
    want = _train_step()

    def no_compiler(*args):
        raise RuntimeError("Error building extension: c++: command not found\nmore details")

    _fresh(monkeypatch, tmp_path, no_compiler)
    monkeypatch.setenv(native.ENV, "auto")
    capsys.readouterr()
    got = _train_step()
    again = _train_step()
    err = capsys.readouterr().err.splitlines()
    assert err == ["rnnlab: native CPU kernels unavailable (RuntimeError: Error building "
                   "extension: c++: command not found); running the Python engine"]
    for a, b, c in zip(got, want, again, strict=True):
        assert torch.equal(a, b) and torch.equal(c, b)  # the very same computation
    monkeypatch.setenv(native.ENV, "native")  # asked for explicitly: an error
    with pytest.raises(RuntimeError, match="RNNLAB_KERNELS=native.*could not be built"):
        _train_step()


def test_native_means_the_compiled_loop_runs(monkeypatch):
    if not native.available():
        pytest.skip("the native kernels are not available here")
    monkeypatch.setenv(native.ENV, "native")

    def python_loop(*args):
        raise AssertionError("the Python loop ran")

    monkeypatch.setattr(engine, "_forward", python_loop)
    monkeypatch.setattr(engine, "_backward", python_loop)
    for mode in ("LSTM", "GRU", "RNN"):
        _train_step(mode)


def test_the_first_build_says_so_in_one_line_and_concurrent_loads_build_once(monkeypatch,
                                                                           tmp_path, capsys):
    """Two processes (here: threads, each with its own lock file handle) asking at once: one
    builds, the other waits on the lock, then loads what it built; nobody else prints."""
    if not native.available():  # the real kernels are loaded: the fake build below is enough
        pytest.skip("the native kernels are not available here")
    builds = []

    def fake_compile(name, sources, flags, where):
        builds.append(name)
        threading.Event().wait(0.3)  # a build takes a while
        (where / f"{name}.so").write_bytes(b"")

    _fresh(monkeypatch, tmp_path, fake_compile)
    capsys.readouterr()
    results = []
    threads = [threading.Thread(target=lambda: results.append(native._State().get(False)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and len(results) == 2 and all(r is not None for r in results)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("rnnlab: compiled the native CPU kernels in ")
    assert err[0].endswith(f"(once; cached in {tmp_path / builds[0]})")
    assert native._State().get(False) is not None and len(builds) == 1  # cached: quiet
    assert capsys.readouterr().err == ""


def test_a_failed_build_is_told_by_the_compilers_first_error():
    e = RuntimeError("Error building extension 'k': [1/2] c++ -MMD ... -c k.cpp\n"
                     "k.cpp:3:1: error: 'x' was not declared\nk.cpp:9:2: error: later\n")
    assert native._reason(e) == "RuntimeError: k.cpp:3:1: error: 'x' was not declared"
    assert native._reason(OSError("")) == "OSError"


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN"])
def test_row_blocks_on_several_threads_give_the_python_engines_numbers(mode, monkeypatch):
    """The kernels split the batch rows into one block per thread (at least 8 rows each): with
    2 threads and 21 packed rows of different lengths, blocks hold rows that start, end and
    run at different steps. Outputs, gradients and telemetry equal the Python engine's."""
    if not native.available():
        pytest.skip("the native kernels are not available here")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = {}
        for path in ("python", "native"):
            monkeypatch.setenv(native.ENV, path)
            torch.manual_seed(5)
            layer = getattr(rnnlab, mode)(3, 5, num_layers=2, bidirectional=True,
                                          dtype=torch.float64)
            x = torch.randn(9, 21, 3, dtype=torch.float64, requires_grad=True)
            lengths = torch.randint(1, 10, (21,))
            lengths[4] = 9
            with rnnlab.trace(layer) as tr:
                out, _ = layer(pack_padded_sequence(x, lengths, enforce_sorted=False))
                out.data.sin().sum().backward()
            got[path] = [out.data, x.grad, *(p.grad for p in layer.parameters()), tr.grad_h,
                         *(v for g in tr.gates.values() for v in g.values())]
            if mode == "LSTM":
                got[path].append(tr.grad_c)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(got["native"], got["python"], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
