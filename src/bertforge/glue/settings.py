"""What `bertforge glue` is told: a settings dataclass that is also the command's flags (``bertforge.options``).
Every value is checked, naming its flag, before any file is read or torch is imported."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bertforge.errors import UsageError
from bertforge.glue.layout import DEFAULT_TASKS, TASKS, task_key
from bertforge.glue.recipes import RECIPES, TaskRecipe, parse_override, recipe_for
from bertforge.options import check, option
from bertforge.train.settings import REPORT_TO, check_report_to

AMP = ("auto", "bf16", "fp16", "off")


@dataclass
class GlueSettings:
    data: str = option("", "GLUE's folder as download_glue_data.py writes it (CoLA/ SST-2/ MRPC/ STS-B/ QQP/ MNLI/ "
                       "QNLI/ RTE/ WNLI/ diagnostic/)", metavar="GLUE_DIR")
    model: str = option("", "pre-trained model directory (transformers layout)", metavar="DIR")
    out: str = option("", "run directory: cells/, results.json, glue.md, glue.png, submission/ (a rerun resumes)",
                      metavar="DIR")
    tasks: list[str] = option(list(DEFAULT_TASKS), "tasks to run, by name or comma-separated (cola sst2 mrpc stsb "
                              "qqp mnli qnli rte wnli); WNLI is left out by default (see the report); AX is "
                              "predicted with the MNLI model", metavar="TASK")
    seeds: str | None = option(None, "N (seeds 1..N) or a list such as 1,2,3, for every task (default: the "
                               "recipe's, 5 for CoLA/MRPC/STS-B/RTE, 3 for the rest)", metavar="N|LIST")
    from_mnli: bool = option(False, "start RTE, MRPC and STS-B from the best MNLI model (its head replaced) "
                             "instead of --model, as MosaicBERT and RoBERTa do")
    recipe: str = option("sane", "paper: BERT's grid (lr 5e-5/4e-5/3e-5/2e-5 chosen on dev, batch 32, 3 epochs); "
                         "sane: Cramming's fixed recipe (lr 4e-5, batch 16, 5 epochs); both 128 pieces",
                         choices=tuple(RECIPES))
    overrides: list[str] = option([], "per-task settings, e.g. rte.lr=2e-5, mrpc.epochs=10, all.max_length=256 "
                                  "(keys: lr, epochs, batch_size, max_length, seeds, warmup, weight_decay, "
                                  "max_train_examples); repeatable", flag="--set", metavar="TASK.KEY=VALUE")
    eval_batch_size: int = option(128, "sequences per evaluation batch", min=1)
    amp: str = option("auto", "mixed precision on CUDA (CPU always trains in fp32)", choices=AMP)
    progress: bool = option(True, "progress bar over the cells", negate="--no-progress")
    report_to: str = option("none", "tensorboard: every cell's fine-tuning run also writes TensorBoard event files "
                            "in its tensorboard/ (the tensorboard extra)", choices=REPORT_TO)

    def __post_init__(self) -> None:
        check(self)
        check_report_to(self.report_to)
        for flag, value in (("--data", self.data), ("--model", self.model), ("--out", self.out)):
            if not value:
                raise UsageError("a value is required", flag=flag)
        names = [n for item in self.tasks for n in item.split(",") if n.strip()]
        keys = [task_key(n) for n in names]
        unknown = [n for n, k in zip(names, keys) if k is None]
        if unknown or not names:
            raise UsageError(f"unknown task {unknown[0]!r}" if unknown else "no task given", flag="--tasks",
                             hint=f"choose from {', '.join(TASKS)}")
        self.tasks = list(dict.fromkeys(keys))
        if self.from_mnli:  # MNLI's cells run first: the tasks that start from it need its model
            self.tasks.sort(key=lambda t: t != "mnli")
        self.seed_list, self.seed_count = _seeds(self.seeds)
        self.parsed_overrides = [parse_override(text, self.tasks) for text in self.overrides]
        if self.from_mnli and "mnli" not in self.tasks and not mnli_results(self.out):
            raise UsageError("needs MNLI: add mnli to --tasks, or use an --out whose MNLI cells are finished",
                             flag="--from-mnli")

    def recipe_for(self, task: str) -> TaskRecipe:
        return recipe_for(self.recipe, task, self.parsed_overrides, self.seed_count)

    def seeds_for(self, task: str) -> list[int]:
        """--seeds as a list, unless --set TASK.seeds=N names this task; else seeds 1..N of the recipe."""
        set_here = any(task in tasks and key == "seeds" for tasks, key, _ in self.parsed_overrides)
        if self.seed_list is not None and not set_here:
            return list(self.seed_list)
        return list(range(1, self.recipe_for(task).seeds + 1))


def _seeds(text: str | None) -> tuple[list[int] | None, int | None]:
    """--seeds: "5" -> seeds 1..5 (a count); "1,2,3" or "7," -> those seeds."""
    if text is None:
        return None, None
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [int(p) for p in parts if p]
    except ValueError:
        raise UsageError(f"expected N or a list such as 1,2,3, got {text!r}", flag="--seeds") from None
    if not values or any(v < 0 for v in values) or ("," not in text and values[0] < 1):
        raise UsageError(f"expected N >= 1 or a list of seeds >= 0, got {text!r}", flag="--seeds")
    if len(set(values)) != len(values):
        raise UsageError(f"seeds repeat: {text!r}", flag="--seeds")
    if "," not in text:
        return None, values[0]
    return values, None


def mnli_results(out: str | Path) -> list[Path]:
    """The finished MNLI cells of a run directory."""
    return sorted(Path(out).glob("cells/mnli/*/seed-*/glue_result.json"))
