"""What an ablation study runs: the variants (rows of the paper's tables), the tasks, the study's settings.

A variant is a pre-training recipe (an objective and its flags) and a fine-tuning recipe (flags of
``finetune``); several variants may fine-tune the same pre-trained model (``LTR + BiLSTM`` reuses
``LTR``'s). Every pre-training run of a study has the same vocabulary, corpus, model size, steps, batch
and sequence length, so each row gets the same tokens (logged) and the same compute budget in steps.
No torch here: the command line checks a plan before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from bertforge.config import PRESETS
from bertforge.data.columnar import require_source
from bertforge.errors import UsageError
from bertforge.options import check, option
from bertforge.train.settings import REPORT_TO, check_report_to

FAMILIES = ("classify", "regress", "choice", "tag", "qa")


@dataclass(frozen=True)
class Variant:
    name: str
    label: str  # the table's row
    kind: str = "pretrain"  # pretrain | random (no pre-training) | word2vec (static vectors)
    objective: str = "mlm+nsp"
    pretrain: dict = field(default_factory=dict)  # extra PretrainArgs fields
    finetune: dict = field(default_factory=dict)  # extra FinetuneArgs fields
    model: str | None = None  # fine-tune this other variant's pre-trained model
    frozen: bool = False  # feature-based: the encoder is not fine-tuned (uses the feature learning rate)
    group: str = "main"  # main | masking | size
    task_families: tuple[str, ...] = FAMILIES  # tasks it is fine-tuned on

    @property
    def model_source(self) -> str:
        """The variant whose pre-trained model this one fine-tunes."""
        return self.model or self.name


LEARNED_POSITIONS = "bert-learned-positions"
# --arch: the family that pre-trains the rows of BERT's objectives (MLM+NSP, MLM, SOP, spans, LTR), random init, and
# ELECTRA's where the family trains it (OBJECTIVE_FAMILIES).
# RoFormer is BERT with rotary positions: at a small budget post-LN BERT with learned positions stays on the
# unigram plateau, RoFormer leaves it (docs/recipes.md).
PAPER_ARCH = "bert"  # the system under study: post-LN BERT with a learned position table
ARCH_NAMES = {"bert": "BERT (learned positions)", "roformer": "RoFormer (BERT with rotary positions)"}
ARCHS = tuple(ARCH_NAMES)
FEATURES = {"freeze_encoder": True, "features": "concat-last-4", "head_bilstm": True}  # the paper's best NER
LAST_4 = 4
SPANBERT_RATE = 0.15


def features_at(preset: str) -> str:
    """The feature-based rows' features at ``preset``: the paper's concatenation of the last 4 layers, or, for a
    model of fewer layers, a scalar mix of all of them (there is no last 4 to concatenate)."""
    return FEATURES["features"] if PRESETS[preset][0] >= LAST_4 else "scalar-mix"

MAIN = (
    Variant("bert", "BERT (MLM + NSP)"),
    # BERT's row on the paper's architecture, beside the study's own when --arch changes it (learned positions)
    Variant(LEARNED_POSITIONS, "BERT (MLM + NSP), learned positions (the paper's architecture)",
            pretrain={"arch": PAPER_ARCH}),
    Variant("no-nsp", "No NSP (MLM alone)", objective="mlm"),
    Variant("sop", "MLM + SOP (ALBERT)", objective="mlm+sop"),
    # SpanBERT's own 15% rate: the small-budget recipe's 40% was measured for single masked tokens; in spans it left
    # the Chinese row above 1/3 of the unigram perplexity, where 15% is below (English: level; docs/ablations.md)
    Variant("spans", "Span masking (SpanBERT, 15%)", objective="mlm", pretrain={"mask_spans": True,
                                                                              "masked_lm_prob": SPANBERT_RATE}),
    Variant("ltr", "LTR & No NSP (GPT)", objective="ltr"),
    Variant("ltr+bilstm", "LTR & No NSP + BiLSTM", finetune={"head_bilstm": True}, model="ltr"),
    Variant("elmo", "ELMo (frozen, scalar mix, BiLSTM)", objective="bilm", frozen=True),
    Variant("xlnet", "XLNet (permutation LM)", objective="plm"),
    Variant("electra", "ELECTRA (replaced-token detection, 1/4-width generator)", objective="electra"),
    Variant("random", "Random initialisation (no pre-training)", kind="random"),
    Variant("random+bilstm", "Random initialisation + BiLSTM (the +BiLSTM rows' control)",
            finetune={"head_bilstm": True}, model="random"),
    Variant("bert-frozen", "BERT frozen, {features} + BiLSTM", finetune=FEATURES, model="bert", frozen=True),
    Variant("word2vec", "Static word2vec vectors + BiLSTM", kind="word2vec", frozen=True),
)
# The paper's Table 8 (Appendix C.2) in its own column order, MASK/SAME/RND, and as --mask-mix MASK,RANDOM,KEEP.
PAPER_MIXES = ("80/10/10", "100/0/0", "80/0/20", "80/20/0", "0/20/80", "0/0/100")
MIXES = tuple(",".join((m, r, s)) for m, s, r in (x.split("/") for x in PAPER_MIXES))
MASKING = tuple(v for mix in MIXES for v in (
    Variant(f"mask-{mix.replace(',', '-')}", f"masking {mix} (fine-tuned)", pretrain={"mask_mix": mix},
            model="bert" if mix == "80,10,10" else None, group="masking", task_families=("tag",)),
    Variant(f"mask-{mix.replace(',', '-')}-features", f"masking {mix} (feature-based)", finetune=FEATURES,
            model="bert" if mix == "80,10,10" else f"mask-{mix.replace(',', '-')}", frozen=True, group="masking",
            task_families=("tag",))))
SIZES = ("tiny", "mini", "small")
SIZES_ALL = tuple(PRESETS)
GROUPS = ("main", "masking", "size")


def variants_of(preset: str) -> dict[str, Variant]:
    """Every variant of a study at ``preset``: the main rows, the masking rows, and one row per model size. The
    feature-based rows use the features ``preset`` has (``features_at``), and their labels say which."""
    sizes = tuple(Variant(f"size-{s}", f"BERT {s}", pretrain={"preset": s}, model="bert" if s == preset else None,
                          group="size") for s in SIZES)
    features = features_at(preset)

    def at_preset(v: Variant) -> Variant:
        if "features" not in v.finetune:
            return v
        return replace(v, label=v.label.format(features=features), finetune={**v.finetune, "features": features})

    return {v.name: at_preset(v) for v in MAIN + MASKING + sizes}


def select_variants(names: list[str], preset: str, arch: str = PAPER_ARCH) -> list[Variant]:
    """The variants named (or every one of the groups named: main, masking, size, all), with the variants
    whose models they fine-tune; unknown names are an error listing the valid ones. A group holds the
    learned-positions BERT row only when the study's ``arch`` is another (else it is the BERT row again)."""
    known = variants_of(preset)
    chosen: list[str] = []
    for name in names:
        if name == "all" or name in GROUPS:
            chosen += [v.name for v in known.values() if (name == "all" or v.group == name)
                       and not (v.name == LEARNED_POSITIONS and arch == PAPER_ARCH)]
        elif name in known:
            chosen.append(name)
        else:
            raise UsageError(f"unknown variant {name!r}", flag="--variants",
                             hint=f"choose from {', '.join(known)} or a group: {', '.join(GROUPS)}, all")
    return [known[n] for n in dict.fromkeys(chosen)]


@dataclass(frozen=True)
class TaskSpec:
    """``NAME=FAMILY:train,dev[,test]`` (or ``FAMILY=train,dev[,test]`` when the name is the family)."""

    name: str
    family: str
    train: str
    dev: str
    test: str | None = None

    @classmethod
    def parse(cls, spec: str) -> "TaskSpec":
        name, eq, files = spec.partition("=")
        family, colon, paths = files.partition(":")
        if not colon:
            family, paths = name, files
        if not eq or not name:
            raise UsageError(f"{spec!r} is not NAME=FAMILY:train,dev[,test]", flag="--task",
                             hint="e.g. ner=tag:train.txt,dev.txt,test.txt")
        if family not in FAMILIES:
            raise UsageError(f"{spec!r}: unknown task family {family!r}", flag="--task",
                             hint=f"write NAME=FAMILY:..., FAMILY one of {', '.join(FAMILIES)}")
        parts = [p for p in paths.split(",") if p]
        if len(parts) < 2:
            raise UsageError(f"{spec!r} has no dev file: the dev set picks each run's best epoch", flag="--task",
                             hint="give train,dev or train,dev,test")
        if len(parts) > 3:
            raise UsageError(f"{spec!r} has {len(parts)} files; give train,dev[,test]", flag="--task")
        for p in parts:
            require_source(p, flag="--task", what="data file")
        return cls(name, family, *parts)


@dataclass
class Study:
    """The settings every run of a study shares (the ``ablate`` command's flags)."""

    corpus: list[str] = option([], "pre-training text files (any corpus format)", metavar="PATH")
    task: list[str] = option([], "NAME=FAMILY:train,dev[,test], e.g. ner=tag:train.txt,dev.txt,test.txt; repeat "
                             "the flag for several tasks (FAMILY: classify, regress, choice, tag, qa)",
                             metavar="SPEC", nargs="+")
    out: str = option("", "study directory (every step resumes from what is there)")
    variants: list[str] = option(["main"], "variants or groups to run: main (the default), masking, size, all, "
                                 "or names such as bert ltr elmo; the table also keeps the rows earlier runs into "
                                 "--out made with the same fine-tuning settings", metavar="NAME")
    seeds: list[int] = option([1, 2, 3], "fine-tuning seeds per cell", min=0)
    preset: str = option("mini", "model size of every variant (Google's BERT sizes)", choices=SIZES_ALL)
    arch: str = option(PAPER_ARCH, "architecture of the rows that BERT's objectives pre-train (MLM+NSP, MLM, SOP, spans, "
                       "LTR) and of random init: bert (the paper's, learned positions) or roformer (BERT with rotary "
                       "positions, which leaves the masked-LM unigram stage at a small budget; the ELECTRA row then "
                       "takes it too, and the table also has BERT with learned positions)", choices=ARCHS)
    steps: int = option(2000, "pre-training steps of every variant (with --budget flops: of the BERT row)", min=1)
    budget: str = option("steps", "steps: every pre-training runs --steps steps; flops: every row trains for the "
                         "FLOPs the BERT row spends in --steps steps (counted from the model and the objective), as "
                         "the ELECTRA paper compares at equal compute", choices=("steps", "flops"))
    seq_len: int = option(128, "pre-training sequence length", min=16)
    batch_size: int = option(32, "pre-training sequences per step", min=1)
    lr: float = option(5e-4, "pre-training peak learning rate", above=0)
    warmup_steps: int = option(200, "pre-training warm-up steps (with --budget flops: of the BERT row; the others "
                                    "warm up for the same share of their own steps)", min=0)
    vocab_size: int = option(8000, "pieces of the shared vocabulary", min=16)
    epochs: int = option(6, "most fine-tuning epochs: every run scores dev after each epoch and keeps its best "
                         "one, so rows that learn slowly (+BiLSTM, frozen) get the time they need", min=1)
    finetune_lr: list[float] = option([1e-4, 3e-4], "learning-rate grid of fine-tuned variants: each row and task "
                                      "is reported at the one with the best mean dev score over the seeds (the "
                                      "paper's protocol)", above=0, metavar="LR")
    feature_lr: list[float] = option([1e-3, 3e-3], "learning-rate grid of frozen-encoder variants (only the task "
                                     "model learns), chosen on dev the same way", above=0, metavar="LR")
    finetune_batch_size: int = option(32, "fine-tuning batch size", min=1)
    max_length: int = option(128, "fine-tuning input length in pieces", min=8)
    max_train_examples: int | None = option(None, "use only the first N training examples of each task", min=1)
    seed: int = option(12345, "seed of the vocabulary, data order, masks and initialisation", min=0)
    progress: bool = option(True, "progress bars", negate="--no-progress")
    report_to: str = option("none", "tensorboard: every pre-training and fine-tuning run also writes TensorBoard "
                            "event files in its tensorboard/ (the tensorboard extra)", choices=REPORT_TO)

    def __post_init__(self) -> None:
        check(self)
        check_report_to(self.report_to)
        for flag, value in (("--corpus", self.corpus), ("--task", self.task), ("--out", self.out)):
            if not value:
                raise UsageError("a value is required", flag=flag)
        self.specs = [TaskSpec.parse(spec) for spec in self.task]
        names = [t.name for t in self.specs]
        if len(set(names)) != len(names):
            raise UsageError(f"task names repeat: {', '.join(names)}", flag="--task")
        self.chosen = select_variants(self.variants, self.preset, self.arch)
        for path in self.corpus:
            require_source(path, flag="--corpus", what="corpus file")

    @property
    def root(self) -> Path:
        return Path(self.out)

    @classmethod
    def quick(cls, **settings) -> "Study":
        """The whole chain on tiny settings, in a few minutes: for tests and a first look."""
        return cls(**{**dict(preset="tiny", steps=30, seq_len=64, batch_size=8, warmup_steps=5, vocab_size=1000,
                             epochs=1, seeds=[1], finetune_batch_size=8, max_length=64, max_train_examples=64,
                             finetune_lr=[1e-4], feature_lr=[1e-3]),
                      **settings})
