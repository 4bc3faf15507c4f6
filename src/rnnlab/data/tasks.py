"""The task registry: ``build_task(name, **config)``.

Every task's options are checked here: an unknown task name or option is a ``UserError`` that
lists the valid ones, and ``build_task(task.name, **task.config())`` rebuilds the same task.
"""

from __future__ import annotations

from ..errors import UserError
from .a13 import A13Task
from .base import Task
from .synthetic import AddingTask, ClassifyTask, CopyMemoryTask, ReverseTask, SelectiveCopyTask
from .text import ShakespeareTask, TextFileTask

TASKS: dict[str, type[Task]] = {
    "shakespeare": ShakespeareTask,
    "text": TextFileTask,
    "a13": A13Task,
    "adding": AddingTask,
    "copy": CopyMemoryTask,
    "selective-copy": SelectiveCopyTask,
    "reverse": ReverseTask,
    "classify": ClassifyTask,
}


def task_names() -> list[str]:
    return list(TASKS)


def build_task(name: str, **config) -> Task:
    """Build a task by name; see each task class for its options (``TASKS[name].OPTIONS``)."""
    cls = TASKS.get(name)
    if cls is None:
        raise UserError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    bad = [k for k in config if k not in cls.OPTIONS]
    if bad:
        valid = ", ".join(cls.OPTIONS) or "(none)"
        raise UserError(f"unknown option {bad[0]!r} for task {name!r}; valid options: {valid}")
    return cls(**config)
