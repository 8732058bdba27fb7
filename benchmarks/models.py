"""The models BERT is compared with, timed in one run (machine otherwise idle, fp32, medians, interleaved):

1. left-to-right vs masked LM: a pre-training step (forward, backward, AdamW) of the `mini` preset on the same
   32 x 128 batches, BertLMHeadModel (causal, every position scored) against BertForPreTraining (MLM + NSP);
2. XLNet against `transformers.XLNetLMHeadModel`: forward + backward with perm_mask and target_mapping (two
   streams), the same weights and batch;
3. ELMo: the biLM language model's training step over WordPiece ids, tokens per second.

    .venv/bin/python benchmarks/models.py [--threads 2] [--steps 5] [--vocab 8000] [--only ltr|xlnet|elmo]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def timed(fn, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(fns: dict, warmup: int, steps: int) -> dict[str, float]:
    """Median seconds of each function, run in turns so that machine noise hits them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(steps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def train_step(model, optimizer, loss_fn):
    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model).backward()
        optimizer.step()
    return step


def ltr_vs_mlm(args) -> None:
    from bertforge.config import BertConfig
    from bertforge.data.masking import SpecialIds, mask_batch
    from bertforge.model import BertForPreTraining, BertLMHeadModel
    from bertforge.train.optim import build_optimizer

    B, T, V = 32, 128, args.vocab
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, V, (B, T), generator=g)
    ids[:, 0], ids[:, -1] = 2, 3
    masked, labels = mask_batch(ids, SpecialIds(2, 3, 4, 0, V), generator=g)
    nsp = torch.randint(0, 2, (B,), generator=g)
    mlm = BertForPreTraining(BertConfig.preset("mini", vocab_size=V))
    ltr = BertLMHeadModel(BertConfig.preset("mini", vocab_size=V, is_decoder=True))
    steps = {
        "MLM + NSP (BertForPreTraining)": train_step(mlm, build_optimizer(mlm), lambda m: m(
            masked, attention_mask=torch.ones_like(ids), labels=labels, next_sentence_label=nsp).loss),
        "LTR (BertLMHeadModel)": train_step(ltr, build_optimizer(ltr), lambda m: m(
            ids, attention_mask=torch.ones_like(ids), labels=ids).loss),
    }
    seconds = interleaved(steps, args.warmup, args.steps)
    base = seconds["MLM + NSP (BertForPreTraining)"]
    print(f"\n1. pre-training step, mini, {B} x {T}, vocabulary {V:,}:")
    for name, s in seconds.items():
        print(f"   {name:<32} {B * T / s:8,.0f} tokens/s   {base / s:5.2f}x the MLM step")
    print("   (LTR scores every position, MLM 15% of them: the vocabulary projection is ~6.7x larger)")


def xlnet_vs_transformers(args) -> None:
    import transformers

    from bertforge.model.xlnet import XLNetConfig, XLNetLMHeadModel, sample_permutation

    transformers.logging.set_verbosity_error()
    cfg = dict(vocab_size=args.vocab, d_model=256, n_layer=4, n_head=4, d_inner=1024)
    torch.manual_seed(0)
    theirs = transformers.XLNetLMHeadModel(transformers.XLNetConfig(**cfg)).train()
    ours = XLNetLMHeadModel(XLNetConfig(**cfg)).train()
    ours.load_state_dict(theirs.state_dict(), strict=False)
    B, T = 8, 128
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, args.vocab, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    types = torch.zeros_like(ids)
    types[:, T // 2:] = 1
    p = sample_permutation(ids, mask, mask.bool(), k=6, generator=g)
    kw = dict(input_ids=ids, token_type_ids=types, attention_mask=mask, perm_mask=p.perm_mask,
              target_mapping=p.target_mapping, labels=p.labels)
    with torch.no_grad():
        ours.eval(), theirs.eval()
        diff = (ours(**kw).logits - theirs(**kw).logits).abs().max().item()
        ours.train(), theirs.train()
    assert diff < 1e-4, f"the models disagree ({diff}): the comparison would be meaningless"

    def step(model):
        def run():
            model.zero_grad(set_to_none=True)
            model(**kw).loss.backward()
        return run

    seconds = interleaved({"transformers": step(theirs), "bertforge": step(ours)}, args.warmup, args.steps)
    print(f"\n2. XLNet forward + backward, d_model 256, 4 layers, {B} x {T}, {p.target_mapping.shape[1]} targets "
          f"per row (two streams), logits equal to {diff:.1e}:")
    for name, s in seconds.items():
        print(f"   {name:<14} {s * 1000:7.0f} ms   {B * T / s:8,.0f} tokens/s")
    print(f"   ratio {seconds['transformers'] / seconds['bertforge']:.2f}x")


# tokens/s of the training step before the fused LSTM, softmax and char-CNN paths (README's run, 2 threads,
# vocabulary 8,000, idle machine): the figure the step is compared with
ELMO_BEFORE = {"tiny": 1525, "mini": 745}


def elmo(args) -> None:
    from bertforge.model.elmo.pieces import ElmoPieceLM
    from bertforge.model.families import preset_config

    B, T, V = 32, 128, args.vocab
    torch.manual_seed(0)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    peak = 2 * 2048 ** 3 / timed(lambda: a @ b, 2, 10)
    print(f"\n3. ELMo. This machine's fp32 matrix product, 2048 x 2048 x 2048: {peak / 1e9:,.0f} GFLOP/s")
    for preset in ("tiny", "mini"):
        model = ElmoPieceLM(preset_config("elmo", preset), [f"p{i}" for i in range(V)])
        ids = torch.randint(5, V, (B, T))
        optimizer = torch.optim.AdamW(model.parameters())

        def loss(m):
            out = m(ids, torch.ones_like(ids))
            return out.forward_loss + out.backward_loss

        s = timed(train_step(model, optimizer, loss), args.warmup, args.steps)
        with torch.no_grad():
            f = timed(lambda: model.bilm(model.char_table[ids]), 1, args.steps)
        before = ""
        if (V, args.threads) == (8000, 2):
            before = f" (before: {ELMO_BEFORE[preset]:,}, {B * T / s / ELMO_BEFORE[preset]:.2f}x)"
        print(f"\n   {preset} (projection {model.config.projection_dim}, cells {model.config.lstm_dim}), "
              f"{B} x {T}: training step {s * 1000:,.0f} ms, {B * T / s:,.0f} tokens/s{before}, "
              f"biLM forward {B * T / f:,.0f} tokens/s")
        calls = dense_calls(train_step(model, optimizer, loss))
        floor = timed(lambda: replay(calls), 1, args.steps)
        gflop = sum(flops for *_, flops in calls) / 1e9
        goal = 3 * ELMO_BEFORE[preset] if (V, args.threads) == (8000, 2) else None
        print(f"   its matrix products and convolutions alone ({len(calls):,} calls, {gflop:,.1f} GFLOP), replayed "
              f"at their own shapes: {floor * 1000:,.0f} ms, {gflop / floor:,.0f} GFLOP/s; so at most "
              f"{B * T / floor:,.0f} tokens/s with nothing else in the step"
              + (f" (the 3x goal: {goal:,})" if goal else "") + f"; the step spends {floor / s:.0%} of its time in them."
              f"\n   Those FLOPs at the 2048-cube rate: {gflop * 1e9 / peak * 1000:,.0f} ms, at most "
              f"{B * T * peak / (gflop * 1e9):,.0f} tokens/s")


DENSE = {"mm", "addmm", "bmm", "baddbmm", "convolution", "convolution_backward"}


def dense_calls(step) -> list[tuple]:
    """The matrix products and convolutions one call of ``step`` runs: (op, args, kwargs, FLOPs), the tensors
    copied, so that ``replay`` runs the same kernels on the same shapes with nothing between them."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    calls = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func.overloadpacket.__name__ in DENSE:
                copy = lambda x: x.detach().clone() if isinstance(x, torch.Tensor) else x  # noqa: E731
                with FlopCounterMode(display=False) as counter:
                    func(*args, **kwargs)
                calls.append((func, [copy(a) for a in args], {k: copy(v) for k, v in kwargs.items()},
                              counter.get_total_flops()))
            return func(*args, **kwargs)

    with Record():
        step()
    return calls


def replay(calls: list[tuple]) -> None:
    for func, args, kwargs, _ in calls:
        func(*args, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--vocab", type=int, default=8000, help="vocabulary size (the demo's)")
    parser.add_argument("--only", choices=sorted(PARTS), help="run one part (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, fp32")
    for name, part in PARTS.items():
        if args.only in (None, name):
            part(args)


PARTS = {"ltr": ltr_vs_mlm, "xlnet": xlnet_vs_transformers, "elmo": elmo}


if __name__ == "__main__":
    main()
