"""Errors in the library's own words: library code names the setting (``top_k``), the command line prints it as
its flag (``--top-k``), so a library caller or the server is never told about flags it did not use."""

import ast
from pathlib import Path

import pytest

from bertforge.cli import main
from bertforge.errors import PathError, UsageError, require_file
from bertforge.config import BertConfig
from bertforge.model import BertForPreTraining, BertLMHeadModel
from bertforge.vocab import train_vocab

SRC = Path(__file__).resolve().parents[1] / "src" / "bertforge"
LIBRARY = ("model", "tasks", "objectives", "inference", "data", "export")  # code that library callers and serve run


def flags_in_library_errors(root: Path = SRC) -> list[str]:
    """``file:line`` of every call in the library packages that passes ``flag="--..."`` (dataclass options aside:
    their flag is the command line's name of a settings field)."""
    found = []
    for package in LIBRARY:
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) != "option":
                    for kw in node.keywords:
                        if (kw.arg == "flag" and isinstance(kw.value, ast.Constant)
                                and str(kw.value.value).startswith("--")):
                            found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_library_code_names_settings_not_flags():
    assert flags_in_library_errors() == []


def test_the_check_finds_a_flag(tmp_path):
    for package in LIBRARY:
        (tmp_path / package).mkdir()
    (tmp_path / "model" / "bad.py").write_text('raise UsageError("x", flag="--top-k")\noption(1, "h", flag="--n")\n')
    assert flags_in_library_errors(tmp_path) == ["model/bad.py:1"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    tok = train_vocab(["the cat sat on the mat"] * 4, 40, min_frequency=1)
    tok.save_pretrained(d)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    return d, tok, config


def test_a_library_caller_reads_the_setting_and_the_command_line_the_flag(tiny, capsys):
    from bertforge.inference import fill_mask
    from bertforge.inference.generate import generate

    d, tok, config = tiny
    with pytest.raises(UsageError) as e:
        fill_mask(BertForPreTraining(config), tok, "the [MASK]", top_k=0)
    assert str(e.value).startswith("top_k: ") and "--" not in str(e.value)
    assert e.value.on_command_line().startswith("--top-k: ")
    with pytest.raises(UsageError, match=r"^max_new_tokens: must be >= 1"):
        generate(BertLMHeadModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1,
                                            num_attention_heads=2, intermediate_size=32, is_decoder=True)),
                 tok, "the", max_new_tokens=0)
    with pytest.raises(PathError) as e:
        require_file(d / "missing.txt", setting="input")
    assert str(e.value).startswith("input ") and e.value.on_command_line().startswith("--input ")

    from bertforge.inference.predictor import check_max_length
    from bertforge.data.options import DataOptions

    with pytest.raises(UsageError, match=r"^max_length: 40 exceeds the model's 32 positions"):
        check_max_length(DataOptions(max_length=40), config)
    BertForPreTraining(config).save_pretrained(d / "mlm")
    tok.save_pretrained(d / "mlm")
    (d / "in.txt").write_text("the cat\n")
    with pytest.raises(SystemExit):  # the positions are known once the library has read the model
        main(["encode", "--model", str(d / "mlm"), "--input", str(d / "in.txt"), "--max-length", "40"])
    assert "error: --max-length: 40 exceeds the model's 32 positions" in capsys.readouterr().err
