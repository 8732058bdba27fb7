import json

import pytest

from bertforge.config import BertConfig, ConfigError, PRESETS


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_follow_googles_family(name):
    layers, hidden, heads = PRESETS[name]
    c = BertConfig.preset(name)
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads) == (layers, hidden, heads)
    assert c.intermediate_size == 4 * hidden and c.vocab_size == 30522 and c.head_size == hidden // heads


def test_preset_table_is_googles():
    assert PRESETS == {"tiny": (2, 128, 2), "mini": (4, 256, 4), "small": (4, 512, 8),
                       "medium": (8, 512, 8), "base": (12, 768, 12), "large": (24, 1024, 16)}
    assert BertConfig.preset("mini", vocab_size=8000).vocab_size == 8000


def test_json_round_trip_keeps_unknown_keys(tmp_path, hf):
    c = BertConfig.from_dict({**BertConfig.preset("tiny").to_dict(), "id2label": {"0": "neg"}, "foo": 3})
    c.to_json_file(tmp_path / "config.json")
    again = BertConfig.from_json_file(tmp_path / "config.json")
    assert again == c and again.extra["foo"] == 3 and again.extra["id2label"] == {"0": "neg"}
    theirs = hf.BertConfig.from_pretrained(tmp_path)
    assert (theirs.hidden_size, theirs.num_hidden_layers, theirs.intermediate_size) == (128, 2, 512)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json: no such config file"):
        BertConfig.from_json_file(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"vocab_size": 10,\n "hidden_size": }')
    with pytest.raises(ConfigError, match=r"bad.json: malformed JSON at line 2"):
        BertConfig.from_json_file(tmp_path / "bad.json")
    (tmp_path / "partial.json").write_text(json.dumps({"vocab_size": 10, "hidden_size": 8}))
    with pytest.raises(ConfigError, match="missing required field.*num_hidden_layers"):
        BertConfig.from_json_file(tmp_path / "partial.json")
    with pytest.raises(ConfigError, match=r"hidden_size \(100\) must be divisible by num_attention_heads \(12\)"):
        BertConfig(hidden_size=100)
    with pytest.raises(ConfigError, match="'num_hidden_layers' must be a positive integer"):
        BertConfig(num_hidden_layers=0)
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        BertConfig.preset("huge")
    with pytest.raises(ConfigError, match="model_type is 'gpt2'"):
        BertConfig.from_dict({**BertConfig().to_dict(), "model_type": "gpt2"})
