"""How each GLUE task is fine-tuned: built-in recipes, overridable per task with ``--set TASK.key=value``.

``paper``: BERT's appendix A.3 grid: learning rate 5e-5, 4e-5, 3e-5 or 2e-5 (the one with the best median dev
score is kept), batch 32, 3 epochs, 128 pieces. ``sane``: Cramming's fixed recipe (Geiping & Goldstein, 2023):
5 epochs, lr 4e-5, batch 16, 128 pieces, for every task. Seeds, in both, follow MosaicBERT's protocol: 5 for
the small, high-variance tasks (CoLA, MRPC, STS-B, RTE, WNLI), 3 for the large ones. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from bertforge.errors import UsageError

SMALL_TASKS = ("cola", "mrpc", "stsb", "rte", "wnli")


@dataclass(frozen=True)
class TaskRecipe:
    """One task's fine-tuning settings (``FinetuneArgs`` fields, and the seeds and learning-rate grid)."""

    lr: tuple[float, ...]  # a grid: each rate is run with every seed; dev picks one
    epochs: int
    batch_size: int
    max_length: int
    seeds: int  # how many: seeds 1..N
    warmup: float = 0.1
    weight_decay: float = 0.01
    max_train_examples: int | None = None  # the first N training examples (a quick look), None: all


def _per_task(**settings) -> dict[str, TaskRecipe]:
    return {task: TaskRecipe(seeds=5 if task in SMALL_TASKS else 3, **settings)
            for task in ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")}


RECIPES: dict[str, dict[str, TaskRecipe]] = {
    "paper": _per_task(lr=(5e-5, 4e-5, 3e-5, 2e-5), epochs=3, batch_size=32, max_length=128),
    "sane": _per_task(lr=(4e-5,), epochs=5, batch_size=16, max_length=128),
}
# --set keys: (type, smallest value, largest value or None)
KEYS: dict[str, tuple[type, float, float | None]] = {
    "lr": (float, 0.0, 1.0), "epochs": (int, 1, 1000), "batch_size": (int, 1, None), "max_length": (int, 8, 4096),
    "seeds": (int, 1, 1000), "warmup": (float, 0.0, 1.0), "weight_decay": (float, 0.0, None),
    "max_train_examples": (int, 1, None),
}


def parse_override(text: str, tasks: list[str]) -> tuple[list[str], str, object]:
    """``TASK.key=value`` (TASK ``all`` for every task; ``lr`` may be a comma-separated grid) ->
    (tasks, key, value), or a UsageError naming --set."""
    from bertforge.glue.layout import task_key

    target, dot, rest = text.partition(".")
    key, eq, value = rest.partition("=")
    key = key.strip().replace("-", "_")
    if not dot or not eq or not value.strip():
        raise UsageError(f"{text!r} is not TASK.key=value", flag="--set", hint="e.g. --set rte.lr=2e-5 or "
                         "--set all.epochs=3")
    if key not in KEYS:
        raise UsageError(f"{text!r}: unknown key {key!r}", flag="--set", hint=f"keys: {', '.join(KEYS)}")
    if target.lower() == "all":
        chosen = list(tasks)
    else:
        name = task_key(target)
        if name is None or name not in tasks:
            raise UsageError(f"{text!r}: {target!r} is not one of the tasks run ({', '.join(tasks)})", flag="--set",
                             hint="name a task of --tasks, or all")
        chosen = [name]
    kind, low, high = KEYS[key]
    parts = value.split(",") if key == "lr" else [value]
    values = []
    for part in parts:
        try:
            number = kind(part.strip())
        except ValueError:
            raise UsageError(f"{text!r}: {part.strip()!r} is not {'an integer' if kind is int else 'a number'}",
                             flag="--set") from None
        too_low = number <= low if key == "lr" else number < low
        if too_low or (high is not None and number > high) or number != number:
            bound = (f"> {low:g}" if key == "lr" else f">= {low:g}") + (f" and <= {high:g}" if high is not None else "")
            raise UsageError(f"{text!r}: {key} must be {bound}, got {number:g}", flag="--set")
        values.append(number)
    return chosen, key, tuple(values) if key == "lr" else values[0]


def recipe_for(name: str, task: str, overrides: list[tuple[list[str], str, object]], seeds: int | None = None
               ) -> TaskRecipe:
    """The recipe ``name``'s settings for ``task``, with the ``--set`` overrides that name it (later ones win)
    and ``--seeds`` (a count) when given."""
    recipe = RECIPES[name][task]
    for tasks, key, value in overrides:
        if task in tasks:
            recipe = replace(recipe, **{key: value})
    if seeds is not None and not any(task in t and k == "seeds" for t, k, _ in overrides):
        recipe = replace(recipe, seeds=seeds)
    return recipe


def describe(recipe: TaskRecipe) -> dict:
    """The recipe as plain JSON values (results.json's chosen settings)."""
    values = {f.name: getattr(recipe, f.name) for f in fields(recipe)}
    return values | {"lr": list(recipe.lr)}
