"""The task table: for each family of the paper (§4), how to read, encode, decode and score it.

A fine-tuning task is data, not a script: ``TASKS[name]`` says how to read examples, turn them into
model inputs, turn model outputs back into predictions, and score them (see ``tasks/base.py``).
The training loop, ``evaluate``, ``predict`` and the server all go through this table.
"""

from __future__ import annotations

from bertforge.errors import UsageError
from bertforge.tasks.base import Task
from bertforge.tasks.choice import ChoiceTask
from bertforge.tasks.classify import ClassifyTask, RegressTask
from bertforge.data.options import DataOptions
from bertforge.tasks.qa import QATask
from bertforge.tasks.tag import TagTask

TASKS: dict[str, Task] = {t.name: t for t in (ClassifyTask(), RegressTask(), ChoiceTask(), TagTask(), QATask())}
TASK_NAMES = tuple(TASKS)  # also in bertforge.train.settings, which the CLI reads without importing torch


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise UsageError(f"unknown task {name!r}", setting="task", hint=f"choose one of {', '.join(TASKS)}")
    return TASKS[name]


__all__ = ["TASKS", "Task", "DataOptions", "get_task"]
