"""Examples -> model inputs -> predictions: truncation counted, windows stitched, answers recovered."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from bertforge.data.batching import bucketed_batches
from bertforge.tasks.choice import encode_choices
from bertforge.tasks.classify import encode_text
from bertforge.tasks.features import EncodedTexts, Feature, collate
from bertforge.tasks.qa import QAWindow, answer_token_span, decode_qa, encode_qa
from bertforge.tasks.tag import TagWindow, encode_tagged, stitch_tags
from bertforge.data.examples import QAExample
from bertforge.data.squad import read_squad
from bertforge.data.examples import ChoiceExample, TaggedSentence, TextExample
from bertforge.data.readers import read_conll
from bertforge.tokenization import BertTokenizer


@pytest.fixture(scope="module")
def tok(minilm_dir) -> BertTokenizer:
    return BertTokenizer.from_pretrained(minilm_dir)


@pytest.fixture(scope="module")
def fixtures(fetched):
    return fetched("allennlp-fixtures")


@pytest.fixture(scope="module")
def squad(fixtures) -> list[QAExample]:
    examples, skipped = read_squad(fixtures / "squad.json")
    assert (len(examples), skipped) == (5, 0)
    return examples


# --------------------------------------------------------------------------------------------
# Classification, regression, multiple choice


def test_encode_text_maps_labels_and_counts_truncation(tok):
    long_a = "the quick brown fox jumps over the lazy dog " * 3
    examples = [TextExample("A short sentence.", None, "pos", "a"),
                TextExample(long_a, "and then it slept for a very long while", "neg", "b"),
                TextExample("short", "a hypothesis " * 20, "pos", "c"),  # only B is long
                TextExample("x", "y", None, "d")]
    out = encode_text(tok, examples, {"neg": 0, "pos": 1}, max_length=16)
    assert isinstance(out, EncodedTexts) and len(out) == 4
    assert out.truncated == 2
    assert [f.label for f in out] == [1, 0, 1, None]
    assert [f.example_index for f in out] == [0, 1, 2, 3]
    for f, ex in zip(out, examples):  # the tokenizer's own Google truncation gives the same rows
        assert f.input_ids == tok.encode(ex.text, ex.text_pair, max_length=16)
        assert len(f.input_ids) <= 16
    # pair c: A is kept whole, B cut to the rest of the budget
    assert out[2].input_ids[:3] == [tok.cls_token_id, *tok.piece_ids(["short"])[0], tok.sep_token_id]
    assert out[2].token_type_ids == [0, 0, 0] + [1] * 13
    assert out[0].token_type_ids == [0] * len(out[0].input_ids)

    with pytest.raises(ValueError, match=r"example b: label 'neg' is not in label2id"):
        encode_text(tok, examples, {"pos": 1}, max_length=16)
    with pytest.raises(ValueError, match=r"example a has label 'pos' but no label2id"):
        encode_text(tok, examples, None, max_length=16)
    assert encode_text(tok, examples[3:], None, max_length=16)[0].label is None  # unlabelled is fine


def test_encode_text_regression_gives_float_labels(tok):
    examples = [TextExample("a man plays", "a man is playing", 3.8, "s1"),
                TextExample("a cat", "a dog", 0.0, "s2")]
    out = encode_text(tok, examples, None, max_length=32, regression=True)
    assert out.truncated == 0
    assert [f.label for f in out] == [3.8, 0.0] and all(isinstance(f.label, float) for f in out)
    batch = collate(out.features, tok.pad_token_id)
    assert batch["labels"].dtype == torch.float32
    assert batch["labels"].tolist() == pytest.approx([3.8, 0.0])


def test_encode_choices_rows_and_shape(tok):
    examples = [ChoiceExample("She opened the door.", ["She walks in.", "The door eats a sandwich.",
                                                        "She sits.", "It rains inside the house today."], 2, "q1"),
                ChoiceExample("A man " + "runs very fast " * 10, ["He stops.", "He flies.", "He sings.", "He waits."],
                              0, "q2")]
    out = encode_choices(tok, examples, max_length=20)
    assert out.truncated == 1  # only q2's long context is cut
    assert [f.label for f in out] == [2, 0]
    for f, ex in zip(out, examples):
        assert len(f.input_ids) == 4
        assert f.input_ids == [tok.encode(ex.context, ending, max_length=20) for ending in ex.endings]
    batch = collate(out.features, tok.pad_token_id)
    width = max(len(r) for f in out for r in f.input_ids)
    assert batch["input_ids"].shape == batch["token_type_ids"].shape == batch["attention_mask"].shape == (2, 4, width)
    assert batch["labels"].tolist() == [2, 0]
    row = out[0].input_ids[1]  # example 0, ending 1, padded
    assert batch["input_ids"][0, 1, :len(row)].tolist() == row
    assert batch["attention_mask"][0, 1].tolist() == [1] * len(row) + [0] * (width - len(row))
    with pytest.raises(ValueError, match=r"example q3: label 4 is not an index of its 2 endings"):
        encode_choices(tok, [ChoiceExample("c", ["a", "b"], 4, "q3")], max_length=20)


# --------------------------------------------------------------------------------------------
# Tagging


LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
LABEL2ID = {t: i for i, t in enumerate(LABELS)}


def test_tagging_labels_first_piece_of_each_word(tok):
    words = ["Ekeus", "antidisestablishmentarianism", "\u200b", "."]  # \u200b: no pieces at all
    assert tok.piece_ids(["\u200b"]) == [[]]
    [window] = encode_tagged(tok, [TaggedSentence(words, ["B-PER", "O", "B-LOC", "O"], "s")], LABEL2ID,
                             max_length=64, stride=8)
    assert tok.convert_ids_to_tokens(window.input_ids) == [
        "[CLS]", "ek", "##eus", "anti", "##dis", "##est", "##ab", "##lish", "##ment", "##arian", "##ism",
        "[UNK]", ".", "[SEP]"]
    x = -100
    assert window.label == [x, 1, x, 0, x, x, x, x, x, x, x, 5, 0, x]
    assert window.word_ids == [None, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 3, None]
    assert window.max_context == [lab != x for lab in window.label]  # one window: every word is here
    assert window.token_type_ids == [0] * 14 and window.num_words == 4 and window.example_index == 0
    # predicting the gold id at first pieces (and nonsense elsewhere) gives the tags back
    ids = np.array([3 if lab == x else lab for lab in window.label])
    assert stitch_tags([window], [ids], LABELS) == [["B-PER", "O", "B-LOC", "O"]]


def test_tagging_alignment_matches_transformers_split_into_words(tok, fixtures, minilm_dir, hf):
    """The reference: transformers' word_ids() with is_split_into_words, label on each word's first piece."""
    reference = hf.BertTokenizerFast.from_pretrained(str(minilm_dir))
    sentences = read_conll(fixtures / "conll2003.txt", scheme="BIO")
    sentences.append(TaggedSentence(["Ekeus", "antidisestablishmentarianism", "naïve", "São", "U.N.", "AI2"],
                                    ["B-PER", "O", "O", "B-LOC", "B-ORG", "B-ORG"], "x"))
    windows = encode_tagged(tok, sentences, LABEL2ID, max_length=64, stride=8)
    assert len(windows) == len(sentences)
    for sentence, window in zip(sentences, windows):
        enc = reference(sentence.words, is_split_into_words=True)
        word_ids = enc.word_ids()
        labels = [-100 if w is None or w == word_ids[t - 1] else LABEL2ID[sentence.tags[w]]
                  for t, w in enumerate(word_ids)]
        assert (window.input_ids, window.word_ids, window.label) == (enc["input_ids"], word_ids, labels)


def long_sentences(fixtures) -> list[TaggedSentence]:
    conll = read_conll(fixtures / "conll2003.txt", scheme="BIO")
    assert len(conll) == 2
    words, tags = [], []
    for r in range(6):
        for s in conll:
            words += s.words + ["antidisestablishmentarianism"]
            tags += s.tags + ["O"]
    return [conll[0], TaggedSentence(words, tags, "long"), conll[1]]


def test_tagging_windows_never_cut_words_and_stitch_back_exactly(tok, fixtures):
    sentences = long_sentences(fixtures)
    max_length, stride = 32, 8
    windows = encode_tagged(tok, sentences, LABEL2ID, max_length=max_length, stride=stride)
    per_sentence = [[w for w in windows if w.example_index == i] for i in range(3)]
    assert [len(ws) for ws in per_sentence][0::2] == [1, 1]
    long_windows = per_sentence[1]
    assert len(long_windows) >= 5
    words = sentences[1].words
    pieces = [p or [tok.unk_token_id] for p in tok.piece_ids(words)]
    covered = set()
    for w in long_windows:
        assert len(w.input_ids) <= max_length and w.num_words == len(words)
        inner = w.word_ids[1:-1]
        present = sorted(set(inner))
        assert present == list(range(present[0], present[-1] + 1))  # a contiguous run of words
        for word in present:  # each word whole, pieces in order, labelled on its first piece only
            positions = [t for t, v in enumerate(w.word_ids) if v == word]
            assert [w.input_ids[t] for t in positions] == pieces[word]
            assert positions == list(range(positions[0], positions[0] + len(positions)))
            assert w.label[positions[0]] == LABEL2ID[sentences[1].tags[word]]
            assert all(w.label[t] == -100 for t in positions[1:])
        covered |= set(present)
    assert covered == set(range(len(words)))
    for a, b in zip(long_windows, long_windows[1:]):  # consecutive windows overlap by <= stride pieces
        shared = set(a.word_ids[1:-1]) & set(b.word_ids[1:-1])
        assert 0 < sum(len(pieces[word]) for word in shared) <= stride
        assert max(b.word_ids[1:-1]) > max(a.word_ids[1:-1])

    # each word is max-context in exactly one window, the one with the most context on its short side
    for word in range(len(words)):
        homes = [k for k, w in enumerate(long_windows) for t, v in enumerate(w.word_ids)
                 if v == word and w.max_context[t]]
        assert len(homes) == 1

        def context(w):
            positions = [t for t, v in enumerate(w.word_ids) if v == word]
            return min(positions[0] - 1, len(w.input_ids) - 2 - positions[-1])
        best = max(context(w) for w in long_windows if word in w.word_ids)
        assert context(long_windows[homes[0]]) == best

    # oracle logits: gold at first pieces in the max-context window, a WRONG label (scored higher)
    # at first pieces elsewhere: stitching must take each word from its max-context window
    logits = []
    for w in windows:
        scores = np.zeros((len(w.input_ids) + 3, len(LABELS)))  # + 3: a padded batch row
        for t, lab in enumerate(w.label):
            if lab != -100:
                if w.max_context[t]:
                    scores[t, lab] = 1.0
                else:
                    scores[t, (lab + 1) % len(LABELS)] = 5.0
        logits.append(scores)
    stitched = stitch_tags(windows, logits, dict(enumerate(LABELS)))
    assert stitched == [s.tags for s in sentences]
    with pytest.raises(ValueError, match=r"sentence 1: words \[.*\] got no tag"):
        stitch_tags(windows[:2] + windows[3:], logits[:2] + logits[3:], LABELS)


def test_tagging_a_word_longer_than_a_window_is_cut_and_reported(tok, caplog):
    sentence = TaggedSentence(["Joel", "antidisestablishmentarianism", "lives"], ["B-PER", "O", "O"], "s")
    with caplog.at_level(logging.WARNING, logger="bertforge.tasks.tag"):
        windows = encode_tagged(tok, [sentence], LABEL2ID, max_length=6, stride=1)
    assert "1 words longer than max_length - 2 = 4 pieces were cut" in caplog.text
    assert [tok.convert_ids_to_tokens(w.input_ids) for w in windows] == [
        ["[CLS]", "joel", "[SEP]"], ["[CLS]", "anti", "##dis", "##est", "##ab", "[SEP]"],
        ["[CLS]", "lives", "[SEP]"]]
    ids = [np.array([0 if lab == -100 else lab for lab in w.label]) for w in windows]
    assert stitch_tags(windows, ids, LABELS) == [["B-PER", "O", "O"]]


# --------------------------------------------------------------------------------------------
# Extractive QA


def gold_chars(example: QAExample) -> tuple[int, int]:
    answer = example.answers[0]
    return answer["answer_start"], answer["answer_start"] + len(answer["text"])


def oracle_logits(examples, windows, distract=False):
    """High where a token starts (ends) the gold answer, or at [CLS] for impossible questions.

    ``distract``: score every context token that is not max-context in its window higher still as a
    start, which Google's rule must ignore.
    """
    starts, ends = [], []
    for w in windows:
        ex = examples[w.example_index]
        s, e = np.full(len(w.input_ids), -10.0), np.full(len(w.input_ids), -10.0)
        if ex.is_impossible:
            s[0] = e[0] = 10.0
        else:
            a, b = gold_chars(ex)
            for t, off in enumerate(w.offsets):
                if off is not None and off[0] == a:
                    s[t] = 10.0
                if off is not None and off[1] == b:
                    e[t] = 10.0
                if distract and off is not None and not w.token_is_max_context[t]:
                    s[t] = 20.0
        starts.append(s)
        ends.append(e)
    return starts, ends


def test_every_fixture_answer_maps_to_pieces_exactly(tok, squad):
    mismatches, n = [], 0
    for ex in squad:
        enc = tok(ex.context, return_offsets=True, padding=False, return_tensors=None, max_length=10_000)
        offsets = enc["offset_mapping"][0][1:-1]
        for answer in ex.answers:
            n += 1
            first, last = answer_token_span(offsets, ex.context, answer)
            if ex.context[offsets[first][0]:offsets[last][1]] != answer["text"].strip():
                mismatches.append((ex.id, answer["text"]))
    assert n == 7 and mismatches == []  # incl. "Father Julius Nieuwl", which ends on the piece ##wl


def test_qa_windows_targets_and_max_context(tok, squad):
    max_length, stride = 64, 16
    windows = encode_qa(tok, squad, max_length=max_length, doc_stride=stride)
    assert all(isinstance(w, QAWindow) and len(w.input_ids) <= max_length for w in windows)
    for i, ex in enumerate(squad):
        mine = [w for w in windows if w.example_index == i]
        assert len(mine) >= 3
        question = tok.piece_ids([ex.question])[0]
        enc = tok(ex.context, return_offsets=True, padding=False, return_tensors=None, max_length=10_000)
        ctx_ids, ctx_offsets = enc["input_ids"][0][1:-1], [tuple(o) for o in enc["offset_mapping"][0][1:-1]]
        where = {off: p for p, off in enumerate(ctx_offsets)}
        head = len(question) + 2
        seen, homes, window_starts = [], [], []
        for w in mine:
            positions = [where[off] for off in w.offsets[head:-1]]
            window_starts.append(positions[0])
            assert positions == list(range(positions[0], positions[0] + len(positions)))
            assert w.input_ids == [tok.cls_token_id, *question, tok.sep_token_id,
                                   *ctx_ids[positions[0]:positions[-1] + 1], tok.sep_token_id]
            assert w.token_type_ids == [0] * head + [1] * (len(positions) + 1)
            assert w.offsets[:head] == [None] * head and w.offsets[-1] is None
            assert not any(w.token_is_max_context[:head]) and not w.token_is_max_context[-1]
            seen += positions
            homes += [p for p, flag in zip(positions, w.token_is_max_context[head:-1]) if flag]
            # the target: gold tokens whenever the whole answer is in the window, else [CLS]
            a, b = gold_chars(ex)
            inside = (any(o and o[0] == a for o in w.offsets) and any(o and o[1] == b for o in w.offsets))
            if inside:
                assert ex.context[w.offsets[w.start_position][0]:w.offsets[w.end_position][1]] == \
                    ex.answers[0]["text"]
            else:
                assert (w.start_position, w.end_position) == (0, 0)
        assert sum(w.start_position > 0 for w in mine) >= 1
        assert set(seen) == set(range(len(ctx_ids)))  # windows cover every context piece
        assert sorted(homes) == list(range(len(ctx_ids)))  # ... and each is max-context in exactly one
        assert window_starts == [stride * k for k in range(len(mine))]  # Google's doc_stride: the step

    # oracle logits decode to the gold text for every question, even with higher-scoring starts
    # on tokens that are not max-context in their window
    for distract in (False, True):
        starts, ends = oracle_logits(squad, windows, distract)
        predictions, null_diffs = decode_qa(squad, windows, starts, ends)
        assert predictions == {ex.id: ex.answers[0]["text"] for ex in squad}
        assert all(d < 0 for d in null_diffs.values())

    batch = collate(windows[:3], tok.pad_token_id)
    assert batch["input_ids"].shape == (3, max(len(w.input_ids) for w in windows[:3]))
    assert batch["start_positions"].tolist() == [w.start_position for w in windows[:3]]
    assert batch["end_positions"].tolist() == [w.end_position for w in windows[:3]]
    assert "labels" not in batch


def test_qa_version_2_predicts_empty_for_impossible(tok, squad):
    impossible = QAExample("impossible", "Who built the moon base at Notre Dame?", squad[0].context, [], True)
    examples = [squad[0], impossible, squad[2]]
    windows = encode_qa(tok, examples, max_length=64, doc_stride=16)
    assert all((w.start_position, w.end_position) == (0, 0) for w in windows if w.example_index == 1)
    starts, ends = oracle_logits(examples, windows)
    predictions, null_diffs = decode_qa(examples, windows, starts, ends, version_2=True)
    assert predictions == {squad[0].id: squad[0].answers[0]["text"], "impossible": "",
                           squad[2].id: squad[2].answers[0]["text"]}
    assert null_diffs["impossible"] == pytest.approx(20.0 - (-20.0))
    assert null_diffs[squad[0].id] == pytest.approx(-20.0 - 20.0)
    # a threshold above the difference answers anyway
    predictions, _ = decode_qa(examples, windows, starts, ends, version_2=True, null_threshold=50.0)
    assert predictions["impossible"] != ""


def test_qa_offsets_survive_lowercasing_and_accents(tok, caplog):
    context = "Le Café de São Paulo est très bon."
    good = QAExample("good", "Where is the café?", context, [{"text": "São Paulo", "answer_start": 11}])
    part = QAExample("part", "Which city is it?", context, [{"text": "Paul", "answer_start": 15}])
    with caplog.at_level(logging.WARNING, logger="bertforge.tasks.qa"):
        windows = encode_qa(tok, [good, part], max_length=64, doc_stride=16, max_query_length=3)
    assert "2 of 2 questions were cut to max_query_length=3" in caplog.text
    assert "1 answers do not start and end on piece boundaries (e.g. question part)" in caplog.text
    w = windows[0]
    assert w.token_type_ids.count(0) == 3 + 2
    assert tok.convert_ids_to_tokens(w.input_ids[w.start_position:w.end_position + 1]) == ["sao", "paulo"]
    assert context[w.offsets[w.start_position][0]:w.offsets[w.end_position][1]] == "São Paulo"
    assert [context[a:b] for a, b in w.offsets[5:-1]] == ["Le", "Café", "de", "São", "Paulo", "est", "très",
                                                         "bon", "."]
    p = windows[1]
    assert context[p.offsets[p.start_position][0]:p.offsets[p.end_position][1]] == "Paulo"  # covering piece


# --------------------------------------------------------------------------------------------
# Batching


def test_collate_pads_text_and_tags(tok):
    texts = encode_text(tok, [TextExample("one two three four", None, "a", "1"),
                              TextExample("one", None, "b", "2")], {"a": 0, "b": 1}, max_length=16)
    batch = collate(texts.features, pad_id=tok.pad_token_id)
    n0, n1 = len(texts[0].input_ids), len(texts[1].input_ids)
    assert batch["input_ids"].shape == (2, n0) and batch["input_ids"].dtype == torch.long
    assert batch["input_ids"][1, n1:].tolist() == [tok.pad_token_id] * (n0 - n1)
    assert batch["attention_mask"].tolist() == [[1] * n0, [1] * n1 + [0] * (n0 - n1)]
    assert batch["token_type_ids"].sum() == 0
    assert batch["labels"].tolist() == [0, 1] and batch["labels"].dtype == torch.long

    sentences = [TaggedSentence(["Joel", "lives", "in", "Seattle"], ["B-PER", "O", "O", "B-LOC"], "a"),
                 TaggedSentence(["Ekeus"], ["B-PER"], "b")]
    windows = encode_tagged(tok, sentences, LABEL2ID, max_length=16, stride=2)
    batch = collate(windows, pad_id=tok.pad_token_id)
    assert batch["labels"].tolist() == [[-100, 1, 0, 0, 5, -100], [-100, 1, -100, -100, -100, -100]]
    assert batch["input_ids"][1].tolist() == [*tok.encode("Ekeus"), 0, 0]
    unlabelled = encode_tagged(tok, [TaggedSentence(["Joel"], None, "c")], None, max_length=16, stride=2)
    assert unlabelled[0].label is None and "labels" not in collate(unlabelled, tok.pad_token_id)
    with pytest.raises(ValueError, match="mixes"):
        collate([texts[0], windows[0]], tok.pad_token_id)
    assert isinstance(windows[0], TagWindow) and isinstance(texts[0], Feature)


def padded_tokens(batches, lengths) -> int:
    return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)


def test_bucketed_batches_cover_once_deterministic_and_cut_padding():
    lengths = np.random.default_rng(0).integers(5, 400, size=3001).tolist()
    batches = bucketed_batches(lengths, 32, shuffle=True, seed=1, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) <= 32 for b in batches) and sum(len(b) < 32 for b in batches) <= 2  # one partial per chunk
    assert batches == bucketed_batches(lengths, 32, shuffle=True, seed=1, epoch=0)
    assert batches != bucketed_batches(lengths, 32, shuffle=True, seed=1, epoch=1)
    assert batches != bucketed_batches(lengths, 32, shuffle=True, seed=2, epoch=0)
    # the batch order is shuffled, not sorted by length
    maxima = [max(lengths[i] for i in b) for b in batches]
    assert maxima != sorted(maxima) and maxima != sorted(maxima, reverse=True)
    order = np.random.default_rng(1).permutation(len(lengths)).tolist()
    random_batches = [order[i:i + 32] for i in range(0, len(order), 32)]
    assert padded_tokens(batches, lengths) < 0.1 * padded_tokens(random_batches, lengths)

    evaluation = bucketed_batches(lengths, 32, shuffle=False)
    flat = [i for b in evaluation for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    assert padded_tokens(evaluation, lengths) <= padded_tokens(batches, lengths)
