"""What a pre-training or fine-tuning run is told: the settings dataclasses, which are also the command
line's flags (see ``bertforge.options``). No torch here, so ``bertforge ... --help`` and flag checks
are instant; every value is checked, naming its flag, before any data is read."""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field

from bertforge.config import PRESETS
from bertforge.data.corpus import FORMATS
from bertforge.errors import UsageError
from bertforge.options import check, option
from bertforge.data.options import DataOptions

# Torch-free copies of the registries, which import torch (the command line reads these without it);
# tests/test_registry.py checks that they equal what the registries say.
# bertforge.objectives.OBJECTIVES: the families each objective trains (bertforge.objectives.families_for), the
# first one the default; and the objectives the masking flags shape (the masked-LM ones).
OBJECTIVE_FAMILIES = {"mlm+nsp": ("bert", "roformer"), "mlm": ("bert", "modernbert", "roformer"),
                      "mlm+sop": ("bert", "roformer"), "ltr": ("bert", "roformer"), "plm": ("xlnet",),
                      "bilm": ("elmo",), "electra": ("electra", "roformer")}
OBJECTIVE_NAMES = tuple(OBJECTIVE_FAMILIES)
MASKED_OBJECTIVES = ("mlm+nsp", "mlm", "mlm+sop", "electra")
NSP_OBJECTIVE, NO_NSP_OBJECTIVE = "mlm+nsp", "mlm"  # --nsp (the default) and --no-nsp, the paper's "No NSP"
GENERATOR_OBJECTIVE = "electra"  # the objective whose generator --generator-size sizes
# bertforge.model.registry.FAMILIES: what `pretrain --arch NAME` trains (ModelFamily.default_objective).
ARCH_DEFAULT_OBJECTIVE = {"bert": "mlm+nsp", "xlnet": "plm", "elmo": "bilm", "electra": "electra", "modernbert": "mlm",
                          "roformer": "mlm+nsp"}
DEFAULT_ARCH = "bert"
# Google's BERT sizes, which every family builds, and a family's own sizes
# (bertforge.model.modernbert.config.MODERNBERT_PRESETS).
FAMILY_PRESETS = {"modernbert": ("modernbert-base", "modernbert-large")}
PRESET_NAMES = (*PRESETS, *(name for names in FAMILY_PRESETS.values() for name in names))
TASK_NAMES = ("classify", "regress", "choice", "tag", "qa")  # bertforge.tasks.TASKS
FEATURES = ("last", "concat-last-4", "scalar-mix")  # bertforge.model.task_model.FEATURES
OPTIMIZERS = ("adamw", "lamb")  # bertforge.train.optim
SCHEDULES = ("linear", "cosine", "constant")  # bertforge.train.schedule
AMP = ("auto", "bf16", "fp16", "off")
REPORT_TO = ("none", "tensorboard")  # where MetricsLog (train/logs.py) also writes
TENSORBOARD_HINT = "pip install 'bertforge[tensorboard]' (or pip install tensorboard==2.21.0)"


@dataclass(frozen=True)
class Recipe:
    """What a pre-training run takes for the flags it is not given (docs/recipes.md has the measurements)."""

    arch: str  # the family trained when neither --arch, --objective nor --no-nsp is given
    lr: float
    masked_lm_prob: float  # of the masked objectives (ELECTRA's too: at 15% its small discriminator stays at the base rate)
    warmup_steps: int | None = None  # a fixed warm-up ...
    warmup_share: float | None = None  # ... or a share of --max-steps


# Google's BERT defaults hold a small model at the unigram stage for thousands of steps (held-out MLM perplexity
# 0.6x the unigram model's at 1,000 steps of 32 x 128 on tiny, whether post-LN, pre-LN, without dropout or with
# sinusoidal position init); ModernBERT's architecture with a high learning rate and 40% masking leaves it by
# step 400 (docs/recipes.md). The small presets take that recipe unless --recipe google is given.
RECIPES = {
    "google": Recipe(arch="bert", lr=1e-4, masked_lm_prob=0.15, warmup_steps=100),
    "small-budget": Recipe(arch="modernbert", lr=1e-3, masked_lm_prob=0.4, warmup_share=0.2),
}
SMALL_PRESETS = ("tiny", "mini", "small")
# Upper bounds that catch a typo or an exponent slip (--lr 1e30, --max-steps 1e20) before any work: AdamW and
# LAMB move each weight by about lr a step, so lr > 1 only diverges; 1e9 steps is years of training.
MAX_LR = 1.0
MAX_STEPS = 1_000_000_000


@dataclass
class RunSettings:
    """What every training run shares: batches, optimisation, precision, logging."""

    batch_size: int = option(32, "sequences per process and micro-batch", min=1, group="optimisation")
    grad_accum: int = option(1, "micro-batches per optimizer step", min=1, group="optimisation")
    lr: float = option(1e-4, "peak learning rate", above=0, max=MAX_LR, group="optimisation")
    weight_decay: float = option(0.01, "AdamW/LAMB weight decay (not on biases and LayerNorm)", min=0,
                                 group="optimisation")
    clip_norm: float = option(1.0, "clip the gradient norm to this", above=0, group="optimisation")
    optimizer: str = option("adamw", "optimizer", choices=OPTIMIZERS, group="optimisation")
    schedule: str = option("linear", "learning-rate decay after warm-up", choices=SCHEDULES, group="optimisation")
    amp: str = option("auto", "mixed precision on CUDA (CPU always trains in fp32)", choices=AMP,
                      group="optimisation")
    max_non_finite: int = option(10, "stop after this many non-finite losses in a row", min=0,
                                 group="optimisation", cli=False)
    explode_factor: float = option(10.0, "stop when the logged loss is above this multiple of the first logged "
                                   "loss ...", above=1, group="optimisation", cli=False)
    explode_logs: int = option(3, "... in this many log records in a row", min=1, group="optimisation", cli=False)
    compile: bool = option(False, "torch.compile the training step's forward and backward (the first steps "
                           "take longer while it compiles; on CPU it is not faster, and compiled steps run padded)",
                           group="optimisation")
    log_every: int = option(10, "steps between log records", min=1, max=MAX_STEPS, group="logging and checkpoints")
    progress: bool = option(True, "progress bar", negate="--no-progress", group="logging and checkpoints")
    report_to: str = option("none", "tensorboard: also write the logged figures and the run's settings as "
                            "TensorBoard event files in OUT/tensorboard/ (the tensorboard extra)", choices=REPORT_TO,
                            group="logging and checkpoints")


def check_report_to(report_to: str, flag: str = "--report-to") -> None:
    """A reporter whose package is missing is a flag error, found before any work."""
    if report_to == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise UsageError("tensorboard needs the tensorboard package, which is not installed", flag=flag,
                         hint=TENSORBOARD_HINT)


@dataclass
class PretrainArgs(RunSettings):
    corpus: list[str] = option([], "text files: Google format, one document a line, JSONL, wiki XML, People's "
                               "Daily; .gz/.bz2 read transparently; Parquet, Arrow, datasets folders (the arrow "
                               "extra)", metavar="PATH")
    out: str = option("", "run directory: tokenizer, data, checkpoints, logs, model")
    format: str = option("auto", "corpus format (default: detect per file)", choices=("auto", *FORMATS))
    text_field: str = option("text", "the JSONL field, or the Parquet / Arrow column, that holds each document's "
                             "text")
    tokenizer: str | None = option(None, "an existing tokenizer directory (vocab.txt); default: train one",
                                   group="vocabulary")
    vocab_size: int = option(8000, "size of the vocabulary to train", min=16, max=1_000_000, group="vocabulary")
    lowercase: bool = option(True, "keep case (cased model)", negate="--no-lowercase", group="vocabulary")
    preset: str = option("mini", "Google's BERT size (any family), or ModernBERT's own", choices=PRESET_NAMES,
                         group="model")
    model_config: str | None = option(None, "a model's config.json instead of a preset", group="model")
    init_from: str | None = option(None, "continue pre-training from this model directory", group="model")
    dropout: float | None = option(None, "override both dropout probabilities", min=0, below=1, group="model")
    recipe: str = option("auto", "what --arch, --lr, --masked-lm-prob and --warmup-steps are when not given. "
                         "small-budget: ModernBERT (when neither --arch nor --objective is given), lr 1e-3, 40%% "
                         "of tokens masked, warm-up 20%% of --max-steps: a small model leaves the unigram stage "
                         "within a few hundred steps. google: BERT with mlm+nsp, lr 1e-4, 15%% masked, 100 warm-up "
                         "steps. auto (the default): small-budget for the presets tiny, mini and small trained from "
                         "scratch, google otherwise",
                         choices=("auto", *RECIPES), group="model")
    objective: str | None = option(None, "mlm+nsp: masked LM with next-sentence prediction on sentence pairs "
                                   "(BERT; the google recipe's default); mlm: masked LM alone on packed text "
                                   "(No NSP; BERT or ModernBERT); mlm+sop: masked LM with ALBERT's sentence-order "
                                   "prediction on consecutive pairs; ltr: "
                                   "left-to-right LM with a causal mask (GPT); plm: permutation LM (XLNet); bilm: "
                                   "forward and backward LSTM LMs (ELMo); electra: replaced-token detection "
                                   "against a small masked-LM generator (ELECTRA)", choices=OBJECTIVE_NAMES,
                                   group="objective")
    arch: str | None = option(None, "model family, where the objective does not imply it: bert (the google "
                              "recipe's default), modernbert (the small-budget recipe's), roformer (BERT with "
                              "rotary positions: mlm+nsp, mlm, mlm+sop, ltr, electra), "
                              "xlnet (plm), elmo (bilm), electra (electra)",
                              choices=tuple(ARCH_DEFAULT_OBJECTIVE), group="objective")
    nsp: bool = option(True, "same as --objective mlm: no next-sentence task, pack contiguous text",
                       negate="--no-nsp", group="objective")
    plm_k: int = option(6, "--objective plm: predict the last 1/K of each factorisation order", min=1, max=100,
                        group="objective")
    generator_size: float = option(0.25, "--objective electra: the generator's width as a share of the "
                                   "discriminator's (the paper: 1/4 to 1/3)", above=0, max=1, group="objective")
    whole_word_mask: bool = option(False, "mask all pieces of a word together", group="objective")
    static_masks: bool = option(False, "one mask per instance (with --dupe-factor copies), as Google's "
                                "original; default: new masks every epoch", group="objective")
    mask_spans: bool = option(False, "SpanBERT's masking: spans of whole words, lengths ~ Geometric(0.2) clipped "
                              "at 10, the same 15%% budget, [MASK]/random/kept decided per span", group="objective")
    mask_mix: str = option("80,10,10", "percentages of the chosen tokens that become [MASK], a random token, or "
                           "stay unchanged (the paper's Appendix C.2 ablation)", metavar="MASK,RANDOM,KEEP",
                           group="objective")
    masked_lm_prob: float | None = option(None, "share of tokens predicted, or replaced by ELECTRA's generator "
                                          "(default: the recipe's)", above=0, max=1, group="objective")
    max_predictions_per_seq: int | None = option(None, "most predicted tokens per sequence (default: "
                                                 "--masked-lm-prob x --seq-len, rounded up)", min=1,
                                                 group="objective")
    seq_len: int = option(128, "max_seq_length of instances", min=16, max=8192, group="data")
    dupe_factor: int = option(1, "instance passes over the corpus", min=1, max=100, group="data")
    short_seq_prob: float = option(0.1, "share of instances made shorter than --seq-len", min=0, max=1,
                                   group="data")
    eval_fraction: float = option(0.05, "share of documents held out for evaluation", min=0, below=1,
                                  group="data")
    workers: int = option(2, "data preparation processes", min=1, max=256, group="data")
    max_steps: int = option(1000, "optimizer steps", min=1, max=MAX_STEPS, group="optimisation")
    max_flops: float | None = option(None, "train for this many FLOPs instead of --max-steps: a step's forward and "
                                     "backward FLOPs are counted from the model and the objective on the first "
                                     "steps' batches (train/flops.py), so objectives compare at equal compute",
                                     above=0, max=1e30, group="optimisation")
    warmup_steps: int | None = option(None, "linear warm-up steps (default: the recipe's)", min=0, max=MAX_STEPS,
                                      group="optimisation")
    warmup_share: float | None = option(None, "linear warm-up as this share of the run's steps, in place of "
                                        "--warmup-steps: with --max-flops the steps are known only once a step's "
                                        "FLOPs are counted, and a fixed warm-up could outlast them", min=0, max=1,
                                        group="optimisation")
    seed: int = option(12345, "seed of data order, masks and initialisation", min=0, group="optimisation")
    save_every: int = option(200, "steps between checkpoints", min=1, max=MAX_STEPS, group="logging and checkpoints")
    keep_last: int = option(2, "checkpoints kept", min=1, group="logging and checkpoints")
    eval_every: int = option(100, "steps between held-out evaluations", min=1, max=MAX_STEPS,
                             group="logging and checkpoints")
    eval_instances: int = option(512, "held-out instances evaluated", min=1, group="logging and checkpoints")
    lr: float | None = option(None, "peak learning rate (default: the recipe's)", above=0, max=MAX_LR,
                              group="optimisation")
    extra: dict = field(default_factory=dict)
    derived: list[str] = field(default_factory=list)  # the settings the recipe chose (not given by the user)

    def _apply_recipe(self) -> None:
        """Resolve --recipe and fill in the settings it decides that the user did not give (listed in ``derived``,
        so the run's config records both the values and which were chosen for the user)."""
        if self.recipe == "auto":
            from_scratch = self.model_config is None and self.init_from is None
            self.recipe = "small-budget" if from_scratch and self.preset in SMALL_PRESETS else "google"
        recipe = RECIPES[self.recipe]
        if self.objective is None:
            if self.arch is None and not (self.model_config or self.init_from):
                self.arch = recipe.arch
                self.derived.append("arch")
            self.objective = ARCH_DEFAULT_OBJECTIVE[self.arch or DEFAULT_ARCH]
        defaults = {"lr": recipe.lr,
                    "masked_lm_prob": recipe.masked_lm_prob if self.objective in MASKED_OBJECTIVES else 0.15}
        for name, value in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
                self.derived.append(name)
        if self.max_predictions_per_seq is None:
            self.max_predictions_per_seq = math.ceil(self.masked_lm_prob * self.seq_len)
            self.derived.append("max_predictions_per_seq")
        if self.warmup_steps is None:
            self.derived.append("warmup_steps")
            self.resolve_warmup()

    def recipe_summary(self) -> str:
        """One line: the recipe and what it chose for the flags not given."""
        chosen = ", ".join(f"--{name.replace('_', '-')} {getattr(self, name)}" for name in self.derived)
        return f"recipe {self.recipe}: " + (f"{chosen} (flags not given; --help says more)" if chosen else
                                           "every setting it decides was given")

    def resolve_warmup(self) -> None:
        """The warm-up for the current --max-steps when none was given in steps: --warmup-share's or the recipe's
        (called again once a FLOP budget's steps are known)."""
        if "warmup_steps" in self.derived:
            recipe = RECIPES[self.recipe]
            share = recipe.warmup_share if self.warmup_share is None else self.warmup_share
            self.warmup_steps = recipe.warmup_steps if share is None else round(share * self.max_steps)

    @property
    def mask_shares(self) -> tuple[float, float, float]:
        """--mask-mix as shares: ([MASK], random token, unchanged)."""
        mask, random, keep = (int(x) / 100 for x in self.mask_mix.split(","))
        return mask, random, keep

    # Fields that must not change when a run is resumed (the rest, e.g. max_steps, may).
    RESUME_FIXED = ("preset", "model_config", "recipe", "objective", "plm_k", "generator_size", "seq_len",
                    "batch_size", "grad_accum", "lr", "warmup_steps", "warmup_share", "schedule", "optimizer",
                    "weight_decay", "seed", "whole_word_mask", "static_masks", "mask_spans", "mask_mix", "dupe_factor",
                    "masked_lm_prob", "max_predictions_per_seq", "short_seq_prob")

    def __post_init__(self) -> None:
        check(self)
        check_report_to(self.report_to)
        if self.warmup_steps is not None and self.warmup_share is not None:
            raise UsageError("give --warmup-steps or --warmup-share, not both", flag="--warmup-share")
        if not self.nsp:  # --no-nsp is --objective mlm
            if self.objective not in (None, NO_NSP_OBJECTIVE):
                raise UsageError(f"contradicts --objective {self.objective}", flag="--no-nsp")
            self.objective = NO_NSP_OBJECTIVE
        self._apply_recipe()
        families = OBJECTIVE_FAMILIES[self.objective]
        if self.arch is not None and self.arch not in families:
            works = [name for name, trained in OBJECTIVE_FAMILIES.items() if self.arch in trained]
            raise UsageError(f"--objective {self.objective} trains {' or '.join(families)}, not {self.arch}",
                             flag="--arch", hint=f"for --arch {self.arch} use --objective {' or '.join(works)}, "
                                                 "or leave out --arch")
        self.nsp = self.objective == NSP_OBJECTIVE
        shares = self.mask_mix.split(",")
        if len(shares) != 3 or not all(x.strip().isdigit() for x in shares) or sum(map(int, shares)) != 100:
            raise UsageError(f"expected three whole percentages that sum to 100, got {self.mask_mix!r}",
                             flag="--mask-mix", hint="e.g. 80,10,10 (the default) or 100,0,0")
        masking = [flag for flag, used in (("--whole-word-mask", self.whole_word_mask), ("--mask-spans", self.mask_spans),
                                           ("--mask-mix", self.mask_mix != "80,10,10")) if used]
        if masking and self.objective not in MASKED_OBJECTIVES:
            raise UsageError(f"is for the masked-LM objectives ({', '.join(MASKED_OBJECTIVES)}), not "
                             f"{self.objective}", flag=masking[0])
        if not self.corpus:
            raise UsageError("at least one corpus file is required", flag="--corpus")
        if not self.out:
            raise UsageError("a run directory is required", flag="--out")
        if self.static_masks and self.dupe_factor == 1:
            pass  # one mask per instance for the whole run: allowed, Google's default is dupe_factor 10
        if self.model_config and self.init_from:
            raise UsageError("give --model-config or --init-from, not both", flag="--model-config")
        if not (self.model_config or self.init_from):
            family = self.arch or families[0]
            if self.preset not in PRESETS and self.preset not in FAMILY_PRESETS.get(family, ()):
                owner = next(f for f, names in FAMILY_PRESETS.items() if self.preset in names)
                raise UsageError(f"{self.preset} is another family's own size; --objective {self.objective} builds "
                                 f"{family}, in Google's BERT sizes ({', '.join(PRESETS)})", flag="--preset",
                                 hint=f"--arch {owner} --objective {ARCH_DEFAULT_OBJECTIVE[owner]} builds it; or "
                                      "choose a Google size")
            if self.objective == GENERATOR_OBJECTIVE:
                self._check_generator_width(family)

    def _check_generator_width(self, family: str) -> None:
        """A generator width the preset's family cannot build (RoFormer: an odd head size) is a flag error, found
        before the vocabulary is trained (the registries import torch, which an ELECTRA run needs anyway)."""
        from bertforge.errors import ConfigError
        from bertforge.model.electra.config import generator_config
        from bertforge.model.registry import preset_config

        try:
            generator_config(preset_config(family, self.preset), self.generator_size)
        except ConfigError as e:
            raise UsageError(f"{e.message} (--preset {self.preset})", flag="--generator-size",
                             hint="e.g. 0.25, the default") from None


@dataclass
class FinetuneArgs(RunSettings):
    task: str = option("classify", "task family", choices=TASK_NAMES)
    model: str = option("", "pre-trained model directory (transformers layout)")
    train: str = option("", "training file")
    dev: str = option("", "development file: picks the best epoch and seed")
    out: str = option("", "run directory: model, eval_results.json, metrics.jsonl, curves")
    test: str | None = option(None, "test file: scored once with the best model")
    data: DataOptions = field(default_factory=DataOptions)
    epochs: int = option(3, "passes over the training data", min=1, max=1000)
    lr: float = option(3e-5, "peak learning rate", above=0, max=MAX_LR, group="optimisation")
    eval_batch_size: int = option(128, "sequences per evaluation batch", min=1, group="optimisation")
    warmup: float = option(0.1, "share of steps for the linear warm-up", min=0, max=1, group="optimisation")
    dropout: float | None = option(None, "override dropout (default: the checkpoint's, 0.1)", min=0, below=1)
    seeds: list[int] = option([1], "one run per seed; mean ± std reported", min=0)
    max_train_examples: int | None = option(None, "use only the first N training examples", min=1)
    freeze_encoder: bool = option(False, "feature-based: train only the task layer on frozen encoder outputs "
                                  "(ELMo models are always used this way)")
    head_bilstm: bool = option(False, "a randomly initialised 2-layer BiLSTM between the encoder and the task layer "
                               "(the paper's +BiLSTM; with --freeze-encoder --features concat-last-4, its best "
                               "feature-based NER; ELMo models always have it)")
    features: str = option("concat-last-4", "with --freeze-encoder: which layer outputs feed the task layer",
                           choices=FEATURES)
    ignore_mismatched_sizes: bool = option(False, "re-initialise a checkpoint head whose number of labels differs")
    feature_cache_gb: float = option(4.0, "a frozen encoder (--freeze-encoder, ELMo) is run once over the training "
                                     "data and its outputs kept in memory for every epoch and seed, as the paper's "
                                     "feature-based approach allows, when they take at most this many GB (0: "
                                     "never); the results are the same either way", min=0, group="optimisation")
    group_by_length: bool = option(False, "batches of similar lengths (sorted within chunks of 50 batches) instead "
                                   "of random ones: rarely faster, since the encoder skips padding anyway, and "
                                   "length-sorted batches are label-skewed, which costs accuracy when length "
                                   "carries label information (SNLI's neutral hypotheses are longer)",
                                   group="optimisation")
    log_every: int = option(20, "steps between log records", min=1, max=MAX_STEPS, group="logging and checkpoints")
    save_every: int | None = option(None, "also save a checkpoint every N steps (one is saved after every epoch); "
                                    "the same command again resumes from the newest", min=1, max=MAX_STEPS,
                                    group="logging and checkpoints")
    keep_last: int = option(2, "checkpoints kept", min=1, group="logging and checkpoints")

    # Fields that must not change when a run is resumed (with the data options and the number of processes).
    RESUME_FIXED = ("task", "model", "train", "dev", "test", "epochs", "batch_size", "grad_accum", "lr",
                    "weight_decay", "clip_norm", "warmup", "optimizer", "schedule", "dropout", "seeds",
                    "max_train_examples", "freeze_encoder", "head_bilstm", "features", "ignore_mismatched_sizes",
                    "group_by_length")

    def __post_init__(self) -> None:
        check(self)
        check_report_to(self.report_to)
        twice = sorted({s for s in self.seeds if self.seeds.count(s) > 1})
        if twice:
            raise UsageError(f"seed {twice[0]} is given twice", flag="--seeds")
        for flag, value in (("--model", self.model), ("--train", self.train), ("--dev", self.dev),
                            ("--out", self.out)):
            if not value:
                raise UsageError("a value is required", flag=flag)
        if self.features != "concat-last-4" and not self.freeze_encoder:
            raise UsageError("chooses the layers of a frozen encoder", flag="--features", hint="add --freeze-encoder")
