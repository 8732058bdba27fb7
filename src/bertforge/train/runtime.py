"""The training runtime that pre-training and fine-tuning share: processes and devices (DDP through
torchrun), mixed precision, and one optimizer step over micro-batches.

``Runtime`` knows where training runs; ``Stepper`` makes one optimizer step: every micro-batch's mean
losses weighted by its share of the global item counts (so 2 ranks x batch b make the same update as
1 rank x batch 2b), backward (DDP synchronises the last micro-batch only), unscale, clip, and the
optimizer step, skipped on the device when the loss or gradient norm is not finite. Nothing in a
step waits for the device: losses, the norm and the skip counters stay there, and ``Stepper.read``
reads them every ``log_every`` steps. That read is also where divergence is noticed: more than
``max_non_finite`` non-finite losses in a row, a loss above ``explode_factor`` times the first logged one
in ``explode_logs`` log records in a row, or a non-finite weight each end training with ``Diverged``.
"""

from __future__ import annotations

import math
import os
import signal
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from bertforge.errors import BertforgeError
from bertforge.model.unpadded import to_device


@contextmanager
def host_synchronisations() -> Iterator[list[str]]:
    """The first lines of CUDA's sync-checker warnings (torch.cuda.set_sync_debug_mode) raised inside the block:
    each is a call that made the host wait for the device. The checker's own notice that it is a prototype
    (torch >= 2.11, naming "synchronization" too) is not one of them."""
    found: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield found
        finally:
            torch.cuda.set_sync_debug_mode("default")
    for w in caught:
        text = str(w.message)
        if "synchroniz" in text.lower() and "prototype feature" not in text.lower():
            found.append(text.splitlines()[0])


class Diverged(BertforgeError, RuntimeError):
    """Training diverged (the loss is not finite or exploded, or a weight is not finite); ``step`` is where
    it was noticed. The recipes add which checkpoint is left to resume from."""

    def __init__(self, message: str, *, step: int | None = None, hint: str | None = None):
        self.step = step
        super().__init__(message, hint=hint)


DIVERGED_HINT = ("lower --lr or lengthen the warm-up, keep gradient clipping, train in fp32 or bf16 instead of fp16, "
                 "and check the data for empty or malformed batches")


@dataclass
class Runtime:
    """Where this process trains: its rank among ``world`` processes and its device."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    amp: str = "off"  # auto (bf16, or fp16 where bf16 is missing, on CUDA) | bf16 | fp16 | off

    @classmethod
    def start(cls, amp: str = "auto") -> "Runtime":
        """Join the process group torchrun set up (NCCL on GPUs, gloo on CPUs), if any; pick the device."""
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return cls(rank, world, device, amp)

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()

    @property
    def main(self) -> bool:
        """True on the process that logs, evaluates and saves."""
        return self.rank == 0

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """Sum ``t`` over ranks (on the GPU under NCCL, which reduces only CUDA tensors); ``t`` alone."""
        if not dist.is_initialized():
            return t
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else t.device
        reduced = t.to(device)
        dist.all_reduce(reduced)
        return reduced.to(t.device)

    def barrier(self) -> None:
        if dist.is_initialized():
            dist.barrier()

    def on_main(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the main process while the others wait; its error reaches every rank."""
        error = None
        if self.main:
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - re-raised below, on every rank
                error = e
        if dist.is_initialized():
            failed = self.all_reduce(torch.tensor([error is not None], dtype=torch.int32))
            if failed.item() and error is None:
                raise RuntimeError("rank 0 failed while preparing; see its error")
        if error is not None:
            raise error

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module to call for training: DDP around ``model`` when there are several processes."""
        if self.world == 1:
            return model
        return DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def autocast(self):
        """(autocast context, GradScaler or None): mixed precision on CUDA, fp32 elsewhere."""
        if self.device.type != "cuda" or self.amp == "off":
            return nullcontext(), None
        fp16 = self.amp == "fp16" or (self.amp == "auto" and not torch.cuda.is_bf16_supported())
        dtype = torch.float16 if fp16 else torch.bfloat16
        return torch.autocast("cuda", dtype=dtype), torch.amp.GradScaler("cuda") if fp16 else None

    @contextmanager
    def interruptible(self) -> Iterator[Callable[[], bool]]:
        """Catch Ctrl-C during the block; yields a function that says (agreed across ranks) whether
        to stop after the current step."""
        flag = {"stop": False}
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum, frame):
            flag["stop"] = True
            if self.main:
                print("\ninterrupt: finishing this step, saving a checkpoint, then stopping", flush=True)

        signal.signal(signal.SIGINT, handler)
        try:
            yield lambda: bool(self.all_reduce(torch.tensor([flag["stop"]], dtype=torch.int32)).item()) \
                if self.world > 1 else flag["stop"]
        finally:
            signal.signal(signal.SIGINT, previous)


LossFn = Callable[[nn.Module, dict], dict[str, torch.Tensor]]


class Stepper:
    """One optimizer step over a list of micro-batches (see the module docstring)."""

    def __init__(self, runtime: Runtime, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler,
                 loss_names: Sequence[str], clip_norm: float = 1.0, max_non_finite: int = 10, compile: bool = False,
                 explode_factor: float = 10.0, explode_logs: int = 3):
        self.runtime, self.model, self.optimizer, self.scheduler = runtime, model, optimizer, scheduler
        self.net = runtime.wrap(model)
        if compile:  # the training forward (and so backward) through torch.compile; evaluation stays eager
            self.net = torch.compile(self.net, dynamic=True)  # batch shapes vary: no recompiling for each
        self.loss_names, self.clip_norm, self.max_non_finite = tuple(loss_names), clip_norm, max_non_finite
        self.explode_factor, self.explode_logs = explode_factor, explode_logs
        self.first_loss: float | None = None  # the first logged (finite) loss: what "exploded" is measured against
        self.exploding = 0  # log records in a row above explode_factor x first_loss
        self.autocast, self.scaler = runtime.autocast()
        device = runtime.device
        # On the device: loss sums per name (this step), the real tokens, the norm, and the skip counters.
        self.loss_sums = torch.zeros(len(self.loss_names), dtype=torch.float64, device=device)
        self.global_counts = torch.zeros(len(self.loss_names), dtype=torch.float64)
        self.tokens = 0
        self.grad_norm = torch.zeros((), device=device)
        self.consecutive = torch.zeros((), dtype=torch.long, device=device)
        self.skipped = torch.zeros((), dtype=torch.long, device=device)
        self._found_inf = getattr(optimizer, "_step_supports_amp_scaling", False)

    def step(self, micro_batches: Sequence[dict[str, torch.Tensor]], loss_fn: LossFn,
             counts_fn: Callable[[dict], dict[str, int]]) -> None:
        """Forward and backward every micro-batch, then clip and step (skipped if not finite)."""
        rt, names = self.runtime, self.loss_names
        prepared = self.prepare(micro_batches, counts_fn)
        self.loss_sums.zero_()
        for m, (batch, counts, shares) in enumerate(prepared):
            last = m == len(prepared) - 1
            sync = self.net.no_sync() if rt.world > 1 and not last else nullcontext()
            with sync:
                with self.autocast:
                    losses = loss_fn(self.net, batch)
                loss = None
                for name, share in zip(names, shares):
                    term = losses[name] * share
                    loss = term if loss is None else loss + term
                loss = loss * rt.world  # DDP averages gradients over ranks
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            self.loss_sums += torch.stack([losses[n].detach().double() * counts[n] for n in names])
        self._optimizer_step()

    def prepare(self, micro_batches: Sequence[dict[str, torch.Tensor]], counts_fn: Callable[[dict], dict[str, int]]
                ) -> list[tuple[dict[str, torch.Tensor], dict[str, int], list[float]]]:
        """The host's part of a step, before anything runs on the device: each micro-batch's item counts and
        share of the global counts (summed over ranks), the real tokens, and the batch on the device with a
        host copy of its values (``unpadded.to_device``: the model reads row lengths without waiting)."""
        rt, names = self.runtime, self.loss_names
        local = [counts_fn(b) for b in micro_batches]
        totals = torch.tensor([sum(c[n] for c in local) for n in names], dtype=torch.float64)
        totals = rt.all_reduce(totals) if rt.world > 1 else totals
        self.global_counts = totals
        global_counts = totals.tolist()  # host values: no device sync (gloo, or a single process)
        self.tokens = sum(int(b["attention_mask"].sum()) for b in micro_batches)
        return [({k: to_device(v, rt.device) for k, v in batch.items()}, counts,
                 [counts[n] / max(g, 1) for n, g in zip(names, global_counts)])
                for batch, counts in zip(micro_batches, local)]

    def _optimizer_step(self) -> None:
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
        finite = torch.isfinite(self.loss_sums.sum()) & torch.isfinite(norm)
        self.grad_norm = norm.detach()
        self.consecutive = torch.where(finite, torch.zeros_like(self.consecutive), self.consecutive + 1)
        self.skipped += (~finite).long()
        if self.scaler:
            self.scaler.step(self.optimizer)  # skips by its own inf check
            self.scaler.update()
        elif self._found_inf:
            self.optimizer.found_inf = (~finite).float()  # the fused kernel skips the update on the device
            self.optimizer.step()
        elif bool(finite):  # an optimizer without on-device skipping: one host sync per step
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()

    def read(self) -> dict[str, float]:
        """This step's global mean losses, gradient norm, lr and skip count (one device sync); raises
        ``Diverged`` when training has diverged (see the module docstring)."""
        sums = self.runtime.all_reduce(self.loss_sums.clone()) if self.runtime.world > 1 else self.loss_sums
        means = [s / max(c, 1) for s, c in zip(sums.tolist(), self.global_counts.tolist())]
        consecutive, skipped = int(self.consecutive), int(self.skipped)
        if consecutive > self.max_non_finite:
            raise Diverged(f"training diverged: {consecutive} non-finite losses in a row ({skipped} steps skipped "
                           "in total)", hint=DIVERGED_HINT)
        if not self.weights_finite():
            raise Diverged("training diverged: some weights are no longer finite numbers", hint=DIVERGED_HINT)
        record = {"loss": sum(means), **{f"{n}_loss": v for n, v in zip(self.loss_names, means)}}
        self._check_explosion(record["loss"])
        record.update(lr=self.scheduler.get_last_lr()[0], grad_norm=float(self.grad_norm), skipped_steps=skipped)
        return record

    def weights_finite(self) -> bool:
        """True if every trained weight is finite (one device sync for all of them)."""
        params = [p.detach() for p in self.model.parameters() if p.requires_grad]
        return not params or bool(torch.stack([torch.isfinite(p).all() for p in params]).all())

    def _check_explosion(self, loss: float) -> None:
        """Count log records whose loss is far above the first one; raise after ``explode_logs`` in a row."""
        if not math.isfinite(loss):
            return  # a skipped step: the non-finite counter above decides
        if self.first_loss is None:
            self.first_loss = loss
            return
        limit = self.explode_factor * max(self.first_loss, 1e-3)
        self.exploding = self.exploding + 1 if loss > limit else 0
        if self.exploding >= self.explode_logs:
            raise Diverged(f"training diverged: the loss is {loss:.4g}, above {self.explode_factor:g} x the first "
                           f"logged loss {self.first_loss:.4g} in {self.exploding} log records in a row",
                           hint=DIVERGED_HINT)

    def state_dict(self) -> dict:
        return {"consecutive": int(self.consecutive), "skipped": int(self.skipped),
                "scaler": self.scaler.state_dict() if self.scaler else None,
                "first_loss": self.first_loss, "exploding": self.exploding}

    def load_state_dict(self, state: dict) -> None:
        self.consecutive.fill_(state["consecutive"])
        self.skipped.fill_(state["skipped"])
        self.first_loss, self.exploding = state.get("first_loss"), state.get("exploding", 0)
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
