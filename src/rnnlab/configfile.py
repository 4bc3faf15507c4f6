"""Config files for ``rnnlab train --config FILE``: TOML, or a run's own config.json.

Both have the three tables of a run's config.json::

    # shakespeare-gru.toml
    [task]
    name = "shakespeare"        # or "text" with path = "my.txt" (relative to this file)
    seq_len = 128
    tokens = "word"             # text tasks: "char" (default) or "word"

    [model]
    backbone = "gru"
    hidden_size = 512
    num_layers = 2
    dropout = 0.1

    [train]
    steps = 5000
    lr = 2e-3
    batch_size = 64
    dtype = "bfloat16"

Every key is checked when the file is read: one that is not an option of its table is a
``UserError`` naming it (``model.hiden_size``). Sizes that follow from the task (the
vocabulary, the classes, the inputs) and values a run's config.json records only because they
were derived (an embedding as wide as the hidden state, the default pooling) are dropped, so a
run's config.json can be reused with another ``--hidden-size`` or ``--text``.
``layered(defaults, file, command_line)`` stacks the three: an option given on the command line
wins over the file, which wins over the defaults.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .backbone import BackboneConfig
from .data import TASKS
from .errors import UserError
from .models import MODELS
from .train import TrainConfig

SECTIONS = ("task", "model", "train")
_DERIVED = ("name", "vocab_size", "num_classes", "input_size", "src_vocab", "tgt_vocab")


def _model_keys() -> set[str]:
    import inspect
    keys = set(BackboneConfig.fields())
    for cls in MODELS.values():
        keys |= {p for p, v in inspect.signature(cls.__init__).parameters.items()
                 if p != "self" and v.kind is not inspect.Parameter.VAR_KEYWORD}
    return keys


def _parse(path: Path) -> dict:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read --config {path}: {e.strerror or e}") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(raw.decode("utf-8"))
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise UserError(f"--config {path}: TOML needs Python ≥ 3.11; use a .json "
                            "file") from None
        return tomllib.loads(raw.decode("utf-8"))
    except UserError:
        raise
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError, TOMLDecodeError
        msg = " ".join(str(e).split())
        raise UserError(f"--config {path} is not valid "
                        f"{'JSON' if path.suffix.lower() == '.json' else 'TOML'}: {msg}") from None


def read(path: str | os.PathLike) -> dict:
    """The file's {"task": {...}, "model": {...}, "train": {...}}, every key checked."""
    path = Path(path)
    doc = _parse(path)
    if not isinstance(doc, dict):
        raise UserError(f"--config {path}: expected tables [task], [model], [train]")
    for key, value in doc.items():
        if key not in SECTIONS:
            raise UserError(f"--config {path}: unknown key {key!r} (options go in the "
                            "[task], [model] and [train] tables)")
        if not isinstance(value, dict):
            raise UserError(f"--config {path}: {key!r} must be a table of options")
    task = dict(doc.get("task", {}))
    model = dict(doc.get("model", {}))
    train = dict(doc.get("train", {}))
    name = task.get("name")
    if name is not None:
        if name not in TASKS:
            raise UserError(f"--config {path}: unknown task.name {name!r}; valid: "
                            f"{', '.join(TASKS)}")
        for k in task:
            if k != "name" and k not in TASKS[name].OPTIONS:
                raise UserError(f"--config {path}: unknown key task.{k} for task {name!r} "
                                f"(valid: {', '.join(TASKS[name].OPTIONS)})")
        if task.get("path") is not None:  # a text file: relative to the config file
            task["path"] = str((path.parent / os.path.expanduser(task["path"])).resolve())
    task.pop("vocab", None)  # the run's vocabulary: a new run builds its own
    valid = _model_keys()
    for k in model:
        if k not in valid and k not in _DERIVED:
            raise UserError(f"--config {path}: unknown key model.{k} (valid: "
                            f"{', '.join(sorted(valid - set(_DERIVED)))})")
    for k in train:
        if k not in TrainConfig.fields():
            raise UserError(f"--config {path}: unknown key train.{k} (valid: "
                            f"{', '.join(TrainConfig.fields())})")
    for k in _DERIVED:
        model.pop(k, None)
    if model.get("embed_size") is not None and model.get("embed_size") == model.get(
            "hidden_size"):
        model.pop("embed_size")  # recorded because it defaulted to hidden_size
    if model.get("pooling") == ("mean" if model.get("backbone") == "attention" else "last"):
        model.pop("pooling")     # recorded because it defaulted for the backbone
    return {"task": task, "model": model, "train": train}


def layered(defaults: dict, file: dict, given: dict) -> dict:
    """Per table: the defaults, then the file, then what the command line gave. The file's
    task options are kept only for the file's own task."""
    name = given.get("task", {}).get("name") or file.get("task", {}).get("name") or \
        defaults.get("task", {}).get("name")
    out = {}
    for sec in SECTIONS:
        f = dict(file.get(sec, {}))
        if sec == "task" and f.get("name", name) != name:
            f = {}
        out[sec] = {k: v for k, v in {**defaults.get(sec, {}), **f, **given.get(sec, {})}.items()
                    if v is not None}
    out["task"]["name"] = name
    return out


def from_command_line(params: dict, on_line, keys: dict, length_option: dict,
                      steps: int) -> tuple[str, dict]:
    """``rnnlab train``'s new run: (task name, {"task", "model", "train"} options) from the
    defaults, then the ``--config`` file, then the options given on the command line.

    ``params``: the command's parameters by name; ``on_line(name)``: whether it was given;
    ``keys``: parameter -> (table, key); ``length_option``: task -> the option --seq-len sets.
    """
    p = params
    file = read(p["config_path"]) if p["config_path"] else {}
    given: dict = {s: {} for s in SECTIONS}
    defaults: dict = {s: {} for s in SECTIONS}
    for param, (sec, key) in keys.items():
        if p[param] is not None:
            (given if on_line(param) else defaults)[sec][key] = p[param]
    defaults["train"].setdefault("steps", steps)
    if p["text_path"] is not None:  # --text implies --task text
        given["task"]["path"] = str(Path(p["text_path"]).resolve())
        given["task"].setdefault("name", "text")
    merged = layered(defaults, file, given)
    task, model = merged["task"].pop("name"), merged["model"]
    if task == "text" and not merged["task"].get("path"):
        raise UserError("--task text needs --text PATH")
    if p["text_path"] is not None and task != "text":
        raise UserError(f"--text goes with --task text, not --task {task}")
    if "tokens" in merged["task"] and "tokens" not in TASKS[task].OPTIONS:
        raise UserError(f"--tokens applies to text tasks (shakespeare, text), not {task}")
    if p["seq_len"] is not None:
        if task not in length_option:
            raise UserError(f"--seq-len does not apply to --task {task} (its sequences "
                            "have their own structure)")
        merged["task"][length_option[task]] = p["seq_len"]
    if model.get("forget_bias") is not None and model.get("backbone", "lstm") != "lstm":
        raise UserError(f"--forget-bias applies to --model lstm, not {model['backbone']}")
    return task, merged
