"""Training logs: a JSON-lines metrics file that resumes cleanly (and, on request, the same figures as
TensorBoard event files), loss curves, throughput, NaN guard."""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from bertforge.train.settings import REPORT_TO, TENSORBOARD_HINT


def _to_json(x: Any) -> Any:
    """Tensors and numpy scalars -> Python numbers, for json.dumps."""
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"cannot log a {type(x).__name__}")


def _parse_lines(text: str, path: Path) -> list[dict]:
    """Records of a JSON-lines text; a broken line (a crash mid-write) is skipped with a warning."""
    records = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            warnings.warn(f"{path}:{i}: skipping a broken metrics line: {line[:80]!r}", stacklevel=3)
    return records


def read_metrics(path: Path) -> list[dict]:
    """All records of a metrics file, in order."""
    path = Path(path)
    return _parse_lines(path.read_text(), path)


class MetricsLog:
    """Append-only JSON-lines metrics, one ``{"step": ..., ...}`` per line, flushed as written.

    ``resume_from_step=s`` first drops records with step > s (logged after the checkpoint we resume
    from), rewriting the file atomically, so the resumed log equals an uninterrupted run's; ``keep``, a test
    of each record, replaces that rule (fine-tuning's steps start again with each seed).
    ``report_to="tensorboard"`` also writes every record to :class:`TensorBoardLog` in ``tensorboard/``
    beside the file, with ``settings`` (the run's settings) as text.
    """

    def __init__(self, path: Path, resume_from_step: int | None = None, *, report_to: str = "none",
                 settings: Mapping[str, Any] | None = None, keep: Callable[[dict], bool] | None = None):
        if report_to not in REPORT_TO:
            raise ValueError(f"report_to must be one of {', '.join(REPORT_TO)}, got {report_to!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if (resume_from_step is not None or keep is not None) and self.path.exists():
            keep = keep or (lambda r: r.get("step", -math.inf) <= resume_from_step)
            kept = [r for r in read_metrics(self.path) if keep(r)]
            tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
            with open(tmp, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in kept)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        ends_cleanly = True  # a crash may have cut the last line: start ours on a fresh one
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                ends_cleanly = f.read(1) == b"\n"
        self._file = open(self.path, "a")
        if not ends_cleanly:
            self._file.write("\n")
        self._board = (TensorBoardLog(self.path.parent / "tensorboard", resume_from_step, settings)
                       if report_to == "tensorboard" else None)

    def log(self, step: int, **metrics: Any) -> dict:
        """Append one record and flush it; tensors and numpy scalars are stored as numbers."""
        record = {"step": int(step), **metrics}
        self._file.write(json.dumps(record, default=_to_json) + "\n")
        self._file.flush()
        if self._board is not None:
            self._board.write(record)
        return record

    def close(self) -> None:
        """Close the file (and the event files)."""
        self._file.close()
        if self._board is not None:
            self._board.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()




def _number(x: Any) -> float | None:
    """A record's value as a scalar to plot, or None for what is not a number (text, lists, flags)."""
    if hasattr(x, "item") and getattr(x, "ndim", 0) == 0:
        x = x.item()
    return float(x) if _is_number(x) else None


class TensorBoardLog:
    """MetricsLog's records as TensorBoard event files (``torch.utils.tensorboard``, the ``tensorboard`` extra).

    Every number of a record is a scalar under its own name at the record's step, so TensorBoard shows what
    ``metrics.jsonl`` holds. A record with a ``seed`` (fine-tuning, whose steps start again for each seed)
    goes to a run of its own, ``seed-N/``. The run's settings are text (JSON), tagged ``settings``.
    ``resume_from_step=s`` starts the files with TensorBoard's purge marker at step s + 1, so the events a cut
    run wrote after its checkpoint are dropped from view, as ``MetricsLog`` drops those records.
    """

    def __init__(self, directory: Path, resume_from_step: int | None = None,
                 settings: Mapping[str, Any] | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch's writer needs the tensorboard package
            raise ImportError(f"report_to='tensorboard' needs the tensorboard package: {TENSORBOARD_HINT}") from None
        self._writer_class = SummaryWriter
        self.directory = Path(directory)
        self._purge_step = None if resume_from_step is None else max(resume_from_step, -1) + 1
        self._settings = settings
        self._writers: dict[str, Any] = {}

    def _writer(self, run: str):
        if run not in self._writers:
            writer = self._writer_class(str(self.directory / run), purge_step=self._purge_step)
            if self._settings is not None:
                text = json.dumps(self._settings, indent=2, sort_keys=True, default=str)
                # a Markdown code block: TensorBoard's text tab renders Markdown
                writer.add_text("settings", "\n".join("    " + line for line in text.splitlines()),
                                global_step=max((self._purge_step or 0) - 1, 0))
            self._writers[run] = writer
        return self._writers[run]

    def write(self, record: Mapping[str, Any]) -> None:
        """One record: its numbers as scalars at ``record["step"]``, flushed (as the JSON line is)."""
        writer = self._writer(f"seed-{record['seed']}" if "seed" in record else "")
        for key, value in record.items():
            number = _number(value)
            if key not in ("step", "seed") and number is not None:
                writer.add_scalar(key, number, global_step=int(record["step"]))
        writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()


_SPLITS = tuple(f"{split}{sep}" for split in ("train", "eval", "val", "valid", "dev", "test")
                for sep in "_/")  # train_loss, eval/loss ...


def _family(key: str) -> str:
    """The subplot a metric goes to: its name without a split prefix (train_loss, eval_loss -> loss)."""
    for prefix in _SPLITS:
        if key.startswith(prefix) and len(key) > len(prefix):
            return key[len(prefix):]
    return key


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def plot_curves(
    records: Sequence[Mapping[str, Any]],
    out_png: Path,
    keys: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
) -> dict[str, list[str]]:
    """Plot metrics against ``step`` into a PNG, one subplot per family (train/eval loss together).

    ``keys``: metric names (default: every numeric one), or ``{title: [names]}`` to group by hand.
    Names that no record has are skipped. Returns the subplots drawn, ``{title: [names]}``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    present = {k for r in records for k, v in r.items() if k != "step" and _is_number(v)}
    if keys is None:
        keys = sorted(present)
    if not isinstance(keys, Mapping):
        grouped: dict[str, list[str]] = {}
        for k in keys:
            grouped.setdefault(_family(k), []).append(k)
        keys = grouped
    panels = {title: [k for k in names if k in present] for title, names in keys.items()}
    panels = {title: names for title, names in panels.items() if names}
    if not panels:
        raise ValueError(f"nothing to plot: none of {list(keys)} is a numeric metric in the records")

    fig = Figure(figsize=(7, 2.6 * len(panels)), layout="constrained")
    FigureCanvasAgg(fig)
    for ax, (title, names) in zip(fig.subplots(len(panels), 1, squeeze=False)[:, 0], panels.items()):
        for name in names:
            points = [(r["step"], r[name]) for r in records if "step" in r and _is_number(r.get(name))]
            ax.plot(*zip(*points), label=name, marker="." if len(points) < 30 else None)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(f".{out_png.name}.tmp-{os.getpid()}")
    try:
        fig.savefig(tmp, format="png", dpi=100)
        os.replace(tmp, out_png)
    finally:
        tmp.unlink(missing_ok=True)
    return panels


class Throughput:
    """Tokens per second over the last ``window`` updates; ``clock`` is injectable for tests."""

    def __init__(self, window: int = 20, clock: Callable[[], float] = time.perf_counter):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.clock = clock
        self.total = 0  # tokens since construction
        self._points: deque[tuple[float, int]] = deque([(clock(), 0)], maxlen=window + 1)

    def update(self, tokens: int) -> float:
        """Record ``tokens`` processed since the last call; returns the current rate."""
        self.total += tokens
        self._points.append((self.clock(), self.total))
        return self.rate

    @property
    def rate(self) -> float:
        """Tokens per second across the window (0 before any time has passed)."""
        (t0, n0), (t1, n1) = self._points[0], self._points[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def reset(self) -> None:
        """Start a new window now (e.g. after an evaluation pause), keeping the total."""
        self._points.clear()
        self._points.append((self.clock(), self.total))


class NonFiniteGuard:
    """Skips steps whose loss is NaN/inf and stops training after ``max_consecutive`` in a row.

    ``check(loss)`` is True for a finite loss; False means "skip this step" (don't step the
    optimizer). The ``max_consecutive + 1``-th non-finite loss in a row raises RuntimeError.
    """

    def __init__(self, max_consecutive: int = 5):
        if max_consecutive < 0:
            raise ValueError(f"max_consecutive must be >= 0, got {max_consecutive}")
        self.max_consecutive = max_consecutive
        self.consecutive = 0
        self.skipped = 0

    def check(self, loss: float | torch.Tensor, step: int | None = None) -> bool:
        """True if the scalar ``loss`` is finite; False (counted) if not; raises after too many."""
        value = float(loss)  # one sync for a GPU scalar
        if math.isfinite(value):
            self.consecutive = 0
            return True
        self.consecutive += 1
        self.skipped += 1
        if self.consecutive > self.max_consecutive:
            at = f" at step {step}" if step is not None else ""
            raise RuntimeError(
                f"{self.consecutive} non-finite losses in a row{at} (last: {value}; {self.skipped} "
                "skipped in total). Training has diverged: lower the learning rate or lengthen the "
                "warm-up, clip gradients, train in fp32 or bf16 instead of fp16, and check the data "
                "for empty or malformed batches."
            )
        return False

    def state_dict(self) -> dict[str, int]:
        """Counters, for checkpoints."""
        return {"consecutive": self.consecutive, "skipped": self.skipped}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore counters saved by ``state_dict``."""
        self.consecutive = state["consecutive"]
        self.skipped = state["skipped"]
