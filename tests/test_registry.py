"""The registries: a model family is one record (model/registry.py), looked up instead of compared by name (checked
on every comparison in the source), the torch-free name lists equal the registries, a model directory is read once,
and a new family is one `register` call: a tiny one defined here is fine-tuned, predicted with and encoded through
the command line, and ModernBERT (slow) goes from pre-training to every command the same way."""

from __future__ import annotations

import ast
import json
import random
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import bertforge
from bertforge.cli import main as cli
from bertforge.errors import ConfigError, UsageError
from bertforge.io.weights import read_state_dict, save_state_dict
from bertforge.model.directory import ModelDir
from bertforge.model.heads import LabelMaps, problem_type, resolve_labels, sequence_loss
from bertforge.model.outputs import SequenceClassifierOutput
from bertforge.model.registry import (ENCODE, ENCODER, EXPORT, FAMILIES, SEQUENCE, ModelFamily, family_of,
                                      get_family, register)
from bertforge.objectives import OBJECTIVES, MaskedLM, families_for
from bertforge.tasks import TASKS
from bertforge.train import settings
from bertforge.vocab import train_vocab

PACKAGE = Path(bertforge.__file__).parent

# Modules that may compare a family, objective or task name, and why.
ALLOWED = {
    "model/registry.py": "the family records themselves",
    "config.py": "BertConfig checks that config.json's model_type is its own",
    "model/xlnet/config.py": "the same, for XLNet",
    "model/elmo/config.py": "the same, for ELMo",
    "model/electra/config.py": "the same, for ELECTRA",
    "model/modernbert/config.py": "the same, for ModernBERT",
    "model/roformer/config.py": "the same, for RoFormer",
    "ablation/run.py": "'bert' there is the name of an ablation variant (the baseline), not a family",
    "io/google_bert.py": "its own table of the heads of Google's TF checkpoints (convert --task), one of them "
                         "called classify",
}


def registered_names() -> set[str]:
    return set(FAMILIES) | set(OBJECTIVES) | set(TASKS)


def name_comparisons(tree: ast.AST, names: set[str]) -> list[tuple[int, str]]:
    """(line, name) of every comparison of a string in ``names``: ``==``, ``!=``, ``in`` and ``not in`` with the
    string or a literal tuple, list or set holding it, and ``startswith`` / ``endswith`` with a prefix of one."""
    found = []

    def strings(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return [s for element in node.elts for s in strings(element)]
        return []

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            found += [(node.lineno, s) for side in (node.left, *node.comparators) for s in strings(side) if s in names]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("startswith", "endswith")):
            found += [(node.lineno, s) for arg in node.args for s in strings(arg)
                      if s and any(n.startswith(s) if node.func.attr == "startswith" else n.endswith(s)
                                   for n in names)]
    return found


def test_the_checker_sees_each_kind_of_name_comparison():
    source = ("a == 'bert'\nif family != 'xlnet': pass\nx = kind in ('elmo', 'other')\nobjective.startswith('mlm')\n"
              "task not in ['qa']\nok = name == 'something'\n")
    assert [n for _, n in name_comparisons(ast.parse(source), registered_names())] == ["bert", "xlnet", "elmo", "mlm",
                                                                                       "qa"]


def test_no_family_objective_or_task_name_is_compared_outside_the_registries():
    names, bad = registered_names(), []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        if module in ALLOWED:
            continue
        bad += [f"{module}:{line} compares {name!r}"
                for line, name in name_comparisons(ast.parse(path.read_text(encoding="utf-8")), names)]
    assert bad == []


def test_the_torch_free_name_lists_equal_the_registries():
    from bertforge.config import PRESETS
    from bertforge.model.modernbert.config import MODERNBERT_PRESETS
    from bertforge.model.task_model import FEATURES

    assert settings.OBJECTIVE_FAMILIES == {name: tuple(f.name for f in families_for(name)) for name in OBJECTIVES}
    assert settings.MASKED_OBJECTIVES == tuple(n for n, o in OBJECTIVES.items() if issubclass(o, MaskedLM))
    assert settings.ARCH_DEFAULT_OBJECTIVE == {f.name: f.default_objective for f in FAMILIES.values()
                                               if f.default_objective}
    assert settings.DEFAULT_ARCH == next(iter(settings.ARCH_DEFAULT_OBJECTIVE))
    assert settings.NSP_OBJECTIVE in OBJECTIVES and OBJECTIVES[settings.NO_NSP_OBJECTIVE].pairs is None
    assert settings.TASK_NAMES == tuple(TASKS) and settings.FEATURES == FEATURES
    assert settings.FAMILY_PRESETS == {"modernbert": tuple(MODERNBERT_PRESETS)}
    assert settings.PRESET_NAMES == (*PRESETS, *MODERNBERT_PRESETS)


def test_every_family_lists_objectives_that_train_it_and_presets_that_build():
    for family in FAMILIES.values():
        if family.default_objective is not None:
            assert family in families_for(family.default_objective)
            assert family_of(family.preset("tiny")) is family
        for kind, head in family.heads.items():
            assert isinstance(head, type), (family.name, kind)


# --- bad input ---------------------------------------------------------------------------------------------------

def pretrain_args(tmp_path, **fields):
    return settings.PretrainArgs(corpus=[str(tmp_path / "c.txt")], out=str(tmp_path / "o"), **fields)


def test_an_impossible_arch_and_objective_is_one_error_listing_the_possible_ones(tmp_path):
    with pytest.raises(UsageError, match=r"--arch: --objective plm trains xlnet, not modernbert.*--objective mlm"):
        pretrain_args(tmp_path, arch="modernbert", objective="plm")
    with pytest.raises(UsageError, match=r"--objective mlm\+nsp trains bert or roformer, not modernbert.*--objective mlm"):
        pretrain_args(tmp_path, arch="modernbert", objective="mlm+nsp")
    with pytest.raises(UsageError, match=r"--objective electra trains electra or roformer, not xlnet.*--objective plm"):
        pretrain_args(tmp_path, arch="xlnet", objective="electra")
    assert pretrain_args(tmp_path, arch="modernbert").objective == "mlm"
    assert pretrain_args(tmp_path, objective="mlm").arch is None  # the first family that trains it: bert


def test_an_unknown_model_type_names_the_file_and_the_known_types(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt9", "hidden_size": 8}))
    with pytest.raises(ConfigError) as e:
        ModelDir.read(tmp_path)
    assert str(tmp_path / "config.json") in str(e.value) and "'gpt9'" in str(e.value)
    assert all(name in str(e.value) for name in FAMILIES)


def test_a_modernbert_config_with_an_odd_window_names_the_field(tmp_path, capsys):
    from bertforge.model.modernbert import ModernBertConfig

    config = ModernBertConfig.preset("tiny").to_dict()
    (tmp_path / "config.json").write_text(json.dumps({**config, "local_attention": 63}))
    with pytest.raises(ConfigError, match=r"config.json.*'local_attention' must be even"):
        ModelDir.read(tmp_path)
    (tmp_path / "c.txt").write_text("A cat sat.\nIt ran.\n\nA dog sat.\nIt ran.\n")
    with pytest.raises(SystemExit):
        cli(["pretrain", "--corpus", str(tmp_path / "c.txt"), "--model-config", str(tmp_path / "config.json"),
             "--objective", "mlm", "--out", str(tmp_path / "run"), "--no-progress"])
    assert "local_attention" in capsys.readouterr().err and not (tmp_path / "run").exists()


# --- a family defined here, registered with one call --------------------------------------------------------------

@dataclass
class TinyConfig:
    vocab_size: int
    hidden_size: int = 16
    max_position_embeddings: int = 128
    extra: dict = field(default_factory=dict)  # label maps and the task, as the heads' configs keep them

    @classmethod
    def from_dict(cls, data: dict, source=None) -> "TinyConfig":
        names = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in data.items() if k in names},
                   extra={k: v for k, v in data.items() if k not in names and k != "model_type"})

    @classmethod
    def preset(cls, name: str, **overrides) -> "TinyConfig":
        return cls(vocab_size=0, **overrides)


class TinyEncoder(nn.Module):
    """Token embeddings -> one tanh layer: (B, T) -> (B, T, H)."""

    def __init__(self, config: TinyConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layer = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, **_):
        return SimpleNamespace(last_hidden_state=torch.tanh(self.layer(self.embed(input_ids))))

    @classmethod
    def from_pretrained(cls, path, ignore_mismatched_sizes: bool = False, **overrides):
        config = TinyConfig.from_dict(json.loads((Path(path) / "config.json").read_text()))
        config.extra.update(overrides)
        model = cls(config)
        model.load_state_dict(read_state_dict(Path(path)), strict=False)  # a new head starts random
        return model

    def save_pretrained(self, path):
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        data = {"model_type": "tiny-test", **self.config.extra, "architectures": [type(self).__name__],
                **{f.name: getattr(self.config, f.name) for f in fields(self.config) if f.name != "extra"}}
        (path / "config.json").write_text(json.dumps(data))
        save_state_dict(self.state_dict(), path / "model.safetensors")


class TinyForSequenceClassification(LabelMaps, TinyEncoder):
    """The largest state of the real tokens -> a linear classifier."""

    def __init__(self, config: TinyConfig):
        super().__init__(config)
        self.num_labels = resolve_labels(config)
        self.classifier = nn.Linear(config.hidden_size, self.num_labels)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None, **_):
        hidden = super().forward(input_ids).last_hidden_state  # (B, T, H)
        if attention_mask is not None:
            hidden = hidden.masked_fill(attention_mask[..., None] == 0, -1.0)
        logits = self.classifier(hidden.max(dim=1).values)  # (B, num_labels)
        loss = None if labels is None else sequence_loss(logits, labels, problem_type(
            self.config.extra.get("problem_type"), self.num_labels, labels))
        return SequenceClassifierOutput(loss, logits)


@pytest.fixture
def tiny_family():
    family = register(ModelFamily("tiny-test", TinyConfig, TinyConfig.preset,
                                  heads={ENCODER: TinyEncoder, SEQUENCE: TinyForSequenceClassification},
                                  can=frozenset({ENCODE, EXPORT}), positions="max_position_embeddings"))
    yield family
    del FAMILIES[family.name]


WORDS = {"pos": ["good", "great", "fine"], "neg": ["bad", "awful", "poor"]}
FILLER = "the a movie film plot was is very".split()


def sentiment(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(sorted(WORDS))
        rows.append({"text": " ".join(rng.sample(FILLER, 4) + [rng.choice(WORDS[label])]), "label": label})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_family_registered_in_one_call_is_fine_tuned_predicted_encoded_served_and_exported(tiny_family, tmp_path, capsys):
    tokenizer = train_vocab([" ".join(FILLER + WORDS["pos"] + WORDS["neg"])] * 5, 100, min_frequency=1)
    torch.manual_seed(0)
    TinyEncoder(TinyConfig(vocab_size=tokenizer.vocab_size)).save_pretrained(tmp_path / "pretrained")
    tokenizer.save_pretrained(tmp_path / "pretrained")
    assert ModelDir.read(tmp_path / "pretrained").family is get_family("tiny-test")
    train, dev = sentiment(tmp_path / "train.jsonl", 64, 0), sentiment(tmp_path / "dev.jsonl", 32, 1)

    cli(["finetune", "--task", "classify", "--model", str(tmp_path / "pretrained"), "--train", str(train), "--dev",
         str(dev), "--out", str(tmp_path / "run"), "--epochs", "8", "--lr", "1e-2", "--batch-size", "8",
         "--no-progress"])
    model = tmp_path / "run" / "model"
    assert json.loads((model / "config.json").read_text())["architectures"] == ["TinyForSequenceClassification"]
    assert json.loads((tmp_path / "run" / "eval_results.json").read_text())["accuracy"] > 0.9

    (tmp_path / "in.txt").write_text("the movie was great\nthe plot was awful\n")
    cli(["predict", "--model", str(model), "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "p.jsonl")])
    assert [json.loads(x)["label"] for x in (tmp_path / "p.jsonl").read_text().splitlines()] == ["pos", "neg"]

    capsys.readouterr()
    cli(["encode", "--model", str(model), "--input", str(tmp_path / "in.txt")])
    vectors = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(vectors) == 2 and all(len(v) == 16 for v in vectors)

    # serve answers what predict wrote; the ONNX export predicts the same labels with the same scores
    from fastapi.testclient import TestClient

    from bertforge.serve.app import create_app
    from bertforge.serve.models import ServedModel
    from bertforge.serve.settings import ServeSettings

    lines = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    served = ServedModel.load(model)
    assert served.family == "tiny-test" and "classify" in served.routes
    with TestClient(create_app(served, ServeSettings(model=str(model)))) as client:
        answers = client.post("/classify", json={"inputs": ["the movie was great", "the plot was awful"]}).json()
    assert [a["label"] for a in answers] == [x["label"] for x in lines]
    assert [a["score"] for a in answers] == pytest.approx([x["score"] for x in lines], abs=1e-6)
    cli(["export", "onnx", "--model", str(model), "--out", str(tmp_path / "onnx")])
    cli(["predict", "--model", str(tmp_path / "onnx"), "--backend", "onnx", "--input", str(tmp_path / "in.txt"),
         "--output", str(tmp_path / "onnx.jsonl")])
    onnx_lines = [json.loads(x) for x in (tmp_path / "onnx.jsonl").read_text().splitlines()]
    assert [x["label"] for x in onnx_lines] == [x["label"] for x in lines]
    assert [x["score"] for x in onnx_lines] == pytest.approx([x["score"] for x in lines], abs=1e-5)


def test_a_family_without_a_capability_is_refused_by_name(tiny_family, tmp_path, capsys):
    tokenizer = train_vocab([" ".join(FILLER)] * 5, 60, min_frequency=1)
    TinyEncoder(TinyConfig(vocab_size=tokenizer.vocab_size)).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(SystemExit):
        cli(["fill-mask", "--model", str(tmp_path), "the [MASK] sat"])
    err = capsys.readouterr().err
    assert "fill-mask needs a BERT-family model (bert, modernbert, roformer); this is tiny-test" in err


# --- ModernBERT, from pre-training to every command --------------------------------------------------------------

@pytest.mark.slow
def test_modernbert_pretrains_and_every_command_takes_the_model(tmp_path, capsys, fetched):
    from bertforge.model.modernbert import ModernBertForMaskedLM

    rng = random.Random(0)
    words = FILLER + WORDS["pos"] + WORDS["neg"] + "cat dog runs sees big small house tree".split()
    docs = ["\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(4, 10))).capitalize() + "."
                      for _ in range(rng.randint(3, 6))) for _ in range(60)]
    (tmp_path / "corpus.txt").write_text("\n\n".join(docs) + "\n")
    run = tmp_path / "pretrain"
    cli(["pretrain", "--arch", "modernbert", "--preset", "tiny", "--objective", "mlm", "--corpus",
         str(tmp_path / "corpus.txt"), "--out", str(run), "--vocab-size", "80", "--seq-len", "32", "--batch-size",
         "8", "--max-steps", "30", "--warmup-steps", "3", "--lr", "2e-3", "--eval-every", "15", "--save-every", "15",
         "--eval-fraction", "0.2", "--workers", "1", "--no-progress"])
    pretrained = run / "model"
    config = json.loads((pretrained / "config.json").read_text())
    assert config["model_type"] == "modernbert" and config["architectures"] == ["ModernBertForMaskedLM"]
    assert config["sparse_prediction"] is True and config["vocab_size"] == 80
    evals = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "eval_mlm_loss" in r]
    assert evals[-1]["eval_mlm_loss"] < evals[0]["eval_mlm_loss"] and 0 <= evals[-1]["eval_mlm_accuracy"] <= 1
    assert isinstance(ModernBertForMaskedLM.from_pretrained(pretrained), ModernBertForMaskedLM)

    train, dev = sentiment(tmp_path / "train.jsonl", 48, 0), sentiment(tmp_path / "dev.jsonl", 16, 1)
    cli(["finetune", "--task", "classify", "--model", str(pretrained), "--train", str(train), "--dev", str(dev),
         "--out", str(tmp_path / "clf"), "--epochs", "1", "--batch-size", "8", "--no-progress"])
    tagged = "".join(f"{w} O\n{s} B-X\n\n" for w, s in zip(rng.choices(FILLER, k=30), rng.choices(words, k=30)))
    (tmp_path / "tag.conll").write_text(tagged)
    header = "video-id,fold-ind,startphrase,sent1,sent2,gold-source,ending0,ending1,ending2,ending3,label\n"
    (tmp_path / "swag.csv").write_text(header + "".join(f"v{i},{i},x,the movie,was,gold,good,bad,fine,poor,{i % 4}\n"
                                                        for i in range(16)))
    squad = str(fetched("allennlp-fixtures") / "squad.json")
    for task, data, flags in (("tag", str(tmp_path / "tag.conll"), ()), ("choice", str(tmp_path / "swag.csv"), ()),
                              ("qa", squad, ("--max-length", "96", "--doc-stride", "32"))):
        cli(["finetune", "--task", task, "--model", str(pretrained), "--train", data, "--dev", data, "--out",
             str(tmp_path / task), "--epochs", "1", "--no-progress", *flags])
        assert json.loads((tmp_path / task / "model" / "config.json").read_text())["model_type"] == "modernbert"
    model = tmp_path / "clf" / "model"
    assert json.loads((model / "config.json").read_text())["architectures"] == ["ModernBertForSequenceClassification"]

    (tmp_path / "in.txt").write_text("the movie was great\nthe plot was awful\n")
    cli(["predict", "--model", str(model), "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "p.jsonl")])
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 2
    capsys.readouterr()
    cli(["encode", "--model", str(pretrained), "--input", str(tmp_path / "in.txt")])
    assert len(capsys.readouterr().out.splitlines()) == 2
    cli(["fill-mask", "--model", str(pretrained), "--top-k", "2", "the movie was [MASK] ."])
    assert capsys.readouterr().out.splitlines()[0] == "the movie was [MASK] ."
    pytest.importorskip("onnxruntime")
    for source, out in ((pretrained, tmp_path / "onnx-mlm"), (model, tmp_path / "onnx-clf")):
        cli(["export", "onnx", "--model", str(source), "--out", str(out)])
        assert json.loads((out / "onnx_export.json").read_text())["files"]["model.onnx"]["max_abs_diff"] < 1e-4
    # the exported classifier predicts what the torch one does (its graph takes no token types)
    cli(["predict", "--model", str(tmp_path / "onnx-clf"), "--backend", "onnx", "--input", str(tmp_path / "in.txt"),
         "--output", str(tmp_path / "onnx.jsonl")])
    torch_lines, onnx_lines = ([json.loads(x) for x in (tmp_path / name).read_text().splitlines()]
                               for name in ("p.jsonl", "onnx.jsonl"))
    assert [x["label"] for x in onnx_lines] == [x["label"] for x in torch_lines]
    assert [x["score"] for x in onnx_lines] == pytest.approx([x["score"] for x in torch_lines], abs=1e-5)
