"""Checkpoints: atomic writes, safe loading (a checkpoint is data, never code), clear errors."""

import os
import pickle

import pytest
import torch

from rnnlab import checkpoint, runs
from rnnlab.errors import UserError


def _payload(step=3):
    return {"step": step, "config": {"task": {"name": "x"}, "lr": 1e-3},
            "model": {"w": torch.arange(6.0).view(2, 3)},
            "rng": {"python": [3, list(range(5)), None], "torch": torch.get_rng_state()}}


def test_round_trip_plain_data(tmp_path):
    p = checkpoint.save(tmp_path / "last.pt", _payload())
    got = checkpoint.load(p)
    assert got["format"] == checkpoint.FORMAT and got["step"] == 3
    assert torch.equal(got["model"]["w"], torch.arange(6.0).view(2, 3))
    assert got["rng"]["python"] == [3, [0, 1, 2, 3, 4], None]
    assert torch.equal(got["rng"]["torch"], torch.get_rng_state())
    # nothing but the checkpoint is left in the directory (no temp files)
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]


def test_failed_save_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    p = checkpoint.save(tmp_path / "last.pt", _payload(step=1))
    before = p.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - a lambda cannot be pickled
        checkpoint.save(p, {**_payload(step=2), "bad": lambda: 0})
    assert p.read_bytes() == before
    assert checkpoint.load(p)["step"] == 1
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]


class _Evil:
    """Unpickling this object would create the marker file (code execution)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
def test_pickle_that_would_run_code_is_refused_not_executed(tmp_path, how):
    # the crafted file really runs code with a plain unpickler ...
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Evil(probe)))
    assert probe.exists()
    # ... but rnnlab refuses it and nothing runs
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    evil = {"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "step": 1,
            "config": {}, "model": _Evil(marker)}
    if how == "torch.save":
        torch.save(evil, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(evil, f)
    with pytest.raises(UserError) as e:
        checkpoint.load(path)
    assert not marker.exists()
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    with pytest.raises(UserError):
        runs.load_run(path)
    assert not marker.exists()


def test_truncated_empty_and_garbage_files_are_clear_errors(tmp_path):
    good = checkpoint.save(tmp_path / "good.pt", _payload()).read_bytes()
    cases = {"truncated.pt": good[: len(good) // 2], "empty.pt": b"",
             "garbage.pt": bytes(range(256)) * 8, "tail-cut.pt": good[:-10]}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UserError, match="cannot read checkpoint|not an rnnlab") as e:
            checkpoint.load(tmp_path / name)
        assert "\n" not in str(e.value)


def test_foreign_pt_files_are_not_rnnlab_checkpoints(tmp_path):
    torch.save(torch.ones(3), tmp_path / "tensor.pt")
    torch.save({"state_dict": {"w": torch.ones(2)}}, tmp_path / "dict.pt")
    torch.save({**_payload(), "format": checkpoint.FORMAT, "version": 99}, tmp_path / "v99.pt")
    for name in ("tensor.pt", "dict.pt"):
        with pytest.raises(UserError, match="not an rnnlab checkpoint"):
            checkpoint.load(tmp_path / name)
    with pytest.raises(UserError, match="version"):
        checkpoint.load(tmp_path / "v99.pt")


def test_missing_paths(tmp_path):
    with pytest.raises(UserError, match="not found"):
        checkpoint.load(tmp_path / "nope.pt")
    with pytest.raises(UserError, match="no such run"):
        checkpoint.find(tmp_path / "nope")
    with pytest.raises(UserError, match="no checkpoint"):
        checkpoint.find(tmp_path)  # an empty directory
    with pytest.raises(UserError, match="not a checkpoint file"):
        checkpoint.load(tmp_path)


def test_find_prefers_last_pt(tmp_path):
    checkpoint.save(tmp_path / "last.pt", _payload(1))
    checkpoint.save(tmp_path / "best.pt", _payload(2))
    assert checkpoint.find(tmp_path) == tmp_path / "last.pt"
    assert checkpoint.find(tmp_path / "best.pt") == tmp_path / "best.pt"


@pytest.mark.cuda
def test_cuda_tensors_load_on_cpu(tmp_path):
    p = checkpoint.save(tmp_path / "last.pt", {"step": 1, "config": {},
                                               "model": {"w": torch.ones(2, device="cuda")}})
    assert checkpoint.load(p)["model"]["w"].device.type == "cpu"
