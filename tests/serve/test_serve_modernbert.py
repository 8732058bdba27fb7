"""A pre-trained ModernBERT directory (what `bertforge pretrain --preset tiny` writes by default) is served: /fill-mask
answers what ``inference.fill_mask`` answers for the same directory, loaded as `bertforge fill-mask` loads it, and
/embed what ``inference.encode`` (`bertforge encode`) gives, whether requests are batched together or run alone;
/attention the encoder's own probabilities, and a pre-trained XLNet or ELECTRA is still refused at start-up."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

TEXT = ("the cat sees the dog near the river . alice lives in paris and bob lives in london . "
        "a big red house stands under a small green tree , where the bird sings very well .")
MASKED = ["the [MASK] sees the dog .", "alice [MASK] in paris and bob lives in [MASK] .",
          " ".join([TEXT] * 3) + " the [MASK] sings ."]  # ~100 pieces: past the local layers' window, and padding
TEXTS = ["the cat", "alice lives in paris and bob lives in london .", " ".join([TEXT] * 3)]


@pytest.fixture(scope="module")
def modernbert_dir(tmp_path_factory):
    """A tiny random ModernBERT masked LM as `pretrain --arch modernbert --objective mlm` saves one (its config's
    vocabulary, padding id and sparse_prediction), with a trained vocabulary. A wide initialisation makes the
    guesses far from uniform, so equal answers are not equal by accident; a narrow local window (8 tokens either
    side) makes the sliding-window layer see less than the whole of the long inputs."""
    import torch

    from bertforge.model.modernbert import ModernBertConfig, ModernBertForMaskedLM
    from bertforge.vocab import train_vocab

    d = tmp_path_factory.mktemp("modernbert") / "model"
    tokenizer = train_vocab([TEXT] * 3, 80, min_frequency=1)
    config = ModernBertConfig.preset("tiny", vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id,
                                     sparse_prediction=True, initializer_range=0.2, local_attention=16)
    torch.manual_seed(0)
    ModernBertForMaskedLM(config).save_pretrained(d)
    tokenizer.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def served_modernbert(modernbert_dir):
    from bertforge.serve.models import ServedModel

    return ServedModel.load(modernbert_dir)


def library_model(path, kind: str):
    """The model `bertforge fill-mask` (MASKED_LM) or `bertforge encode` (ENCODER) loads from ``path``."""
    import warnings

    from bertforge.model.directory import ModelDir

    source = ModelDir.read(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the encoder alone: the head's weights are unused
        return source.family.heads[kind].from_pretrained(path).eval(), source.tokenizer


def test_a_pretrained_modernbert_serves_fill_mask_embed_attention_and_tokenize(served_modernbert, make_client):
    from bertforge.model.modernbert import ModernBertForMaskedLM, ModernBertModel

    model = served_modernbert
    assert model.family == "modernbert" and model.task_name == "fill-mask"
    assert model.routes == ("embed", "fill-mask", "attention", "tokenize")
    assert isinstance(model.mlm, ModernBertForMaskedLM) and isinstance(model.encoder, ModernBertModel)
    with make_client(model) as c:
        info = c.get("/info").json()
        tokens = c.post("/tokenize", json={"inputs": "the cat sees"}).json()
    assert info["family"] == "modernbert" and info["routes"] == ["embed", "fill-mask", "attention", "tokenize"]
    assert info["config"]["layers"] == 2 and info["config"]["pooler"] is False
    ids = model.tokenizer("the cat sees")["input_ids"][0].tolist()
    assert tokens["ids"] == ids and tokens["tokens"][0] == "[CLS]" and tokens["tokens"][-1] == "[SEP]"


def test_fill_mask_equals_the_library(served_modernbert, modernbert_dir, make_client):
    from bertforge.inference.fill_mask import check_trained_head, fill_mask
    from bertforge.model.registry import MASKED_LM, get_family

    reference, tokenizer = library_model(modernbert_dir, MASKED_LM)
    check_trained_head(reference, str(modernbert_dir), get_family("modernbert").masked_lm_unused)  # as the CLI
    with make_client(served_modernbert) as c:
        together = c.post("/fill-mask", json={"inputs": MASKED, "top_k": 5}).json()  # one padded batch
        alone = [c.post("/fill-mask", json={"inputs": text, "top_k": 5}).json() for text in MASKED]
    for text, batched, single in zip(MASKED, together, alone):
        expected = fill_mask(reference, tokenizer, text, top_k=5)
        assert len(batched) == len(single) == len(expected) == text.count("[MASK]")
        for answer in (batched, single):
            for guesses, reference_guesses in zip(answer, expected):
                assert [g["token"] for g in guesses] == [t for t, _ in reference_guesses], text
                np.testing.assert_allclose([g["score"] for g in guesses], [p for _, p in reference_guesses],
                                           atol=1e-6, err_msg=text)
        assert expected[0][0][1] > 5 / tokenizer.vocab_size  # far from uniform: the order of guesses means something


def test_embed_equals_encode_batched_or_alone(served_modernbert, modernbert_dir, make_async_client):
    from bertforge.inference import encode
    from bertforge.model.registry import ENCODER

    reference, tokenizer = library_model(modernbert_dir, ENCODER)

    async def main(pooling: str):
        async with make_async_client(served_modernbert, max_wait_ms=20) as c:
            body = {"pooling": pooling, "normalize": False}
            batched = await asyncio.gather(*(c.post("/embed", json={"inputs": t, **body}) for t in TEXTS * 2))
            stats = c.app.state.batcher.stats.__dict__.copy()  # of one-input requests alone
            together = await c.post("/embed", json={"inputs": TEXTS, **body})
            alone = [await c.post("/embed", json={"inputs": t, **body}) for t in TEXTS]
            return together, batched, alone, stats

    for pooling in ("mean", "cls"):
        together, batched, alone, stats = asyncio.run(main(pooling))
        expected = encode(reference, tokenizer, TEXTS, pooling=pooling).numpy()
        assert together.status_code == 200, together.text
        np.testing.assert_allclose(np.array(together.json()), expected, atol=1e-5, err_msg=pooling)
        np.testing.assert_allclose(np.array([r.json()[0] for r in batched]), np.concatenate([expected] * 2),
                                   atol=1e-5, err_msg=pooling)
        np.testing.assert_allclose(np.array([r.json()[0] for r in alone]), expected, atol=1e-5, err_msg=pooling)
        assert stats["max_rows"] > 1  # one-input requests of different lengths shared a padded batch
    assert not np.allclose(expected[0], expected[1], atol=1e-3)  # the vectors differ from text to text


def test_embed_pooler_is_422_since_modernbert_has_none(served_modernbert, make_client):
    with make_client(served_modernbert) as c:
        r = c.post("/embed", json={"inputs": "the cat", "pooling": "pooler"})
    assert r.status_code == 422 and r.json()["field"] == "pooling" and "no pooler" in r.json()["error"]


def test_attention_equals_the_models_own_probabilities(served_modernbert, modernbert_dir, make_client):
    """Every layer's maps, the sliding-window layer's included, as the encoder returns them (1e-5); batched with a
    short text, the long one's maps do not change."""
    import torch

    from bertforge.model.registry import ENCODER

    with make_client(served_modernbert) as c:
        both = c.post("/attention", json={"inputs": [TEXTS[0], TEXTS[2]]})
        alone = c.post("/attention", json={"inputs": TEXTS[2]})
        one = c.post("/attention", json={"inputs": TEXTS[2], "layer": 1, "head": 0})
    assert both.status_code == alone.status_code == one.status_code == 200, both.text
    encoder, tokenizer = library_model(modernbert_dir, ENCODER)
    enc = tokenizer(TEXTS[2])
    with torch.no_grad():
        expected = torch.stack(encoder(enc["input_ids"], enc["attention_mask"], output_attentions=True).attentions,
                               1)[0].numpy()  # (L, A, T, T)
    served = np.array(both.json()[1]["attention"])
    np.testing.assert_allclose(served, expected, atol=1e-5)
    np.testing.assert_allclose(np.array(alone.json()["attention"]), expected, atol=1e-5)
    np.testing.assert_allclose(np.array(one.json()["attention"])[0, 0], expected[1, 0], atol=1e-5)
    np.testing.assert_allclose(served.sum(-1), 1.0, atol=1e-4)  # each value rounded to 6 places
    T = served.shape[-1]
    far = np.abs(np.arange(T)[:, None] - np.arange(T)[None, :]) > 8  # outside layer 1's window (8 either side)
    assert T > 40 and (served[1][:, far] == 0).all() and (served[0][:, far] > 0).any()  # layer 0 is global


@pytest.mark.parametrize("name", ["xlnet", "electra"])
def test_a_pretrained_xlnet_or_electra_is_still_refused_at_start(serve_models, name):
    from bertforge.errors import UsageError
    from bertforge.serve.models import ServedModel

    with pytest.raises(UsageError, match=f"is a pre-trained {name} model .* would serve tokenize alone") as e:
        ServedModel.load(serve_models[name])
    assert e.value.flag == "--model" and "only from a pre-trained bert or modernbert or roformer model" in str(e.value)
