"""The task model's BiLSTM (the paper's +BiLSTM, and the head of every feature-based row): its narrow path (one
fused LSTM call per direction and layer on the padded batch) against its wide one, ``nn.LSTM`` over packed
sequences, with the same weights. Outputs, the sequence vector and every gradient must agree on rows of different
lengths, and the padding must change nothing."""

import pytest
import torch

from bertforge.model import task_model
from bertforge.model.task_model import BiLSTM


def batch(lengths: list[int], width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    T = max(lengths)
    mask = (torch.arange(T)[None] < torch.tensor(lengths)[:, None]).long()
    return torch.randn(len(lengths), T, width), mask


@pytest.mark.parametrize("training", [False, True])
def test_the_fused_path_equals_nn_lstm_over_packed_sequences_with_its_gradients(training):
    torch.manual_seed(0)
    bilstm = BiLSTM(12, 10).train(training)
    x, mask = batch([7, 3, 1, 5, 7], 12)
    x.requires_grad_(True)
    lengths = mask.sum(1)
    seq, sentence = bilstm.fused(x, lengths)
    ref_seq, ref_sentence = bilstm.packed(x, lengths)
    torch.testing.assert_close(seq, ref_seq, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(sentence, ref_sentence, atol=1e-6, rtol=1e-5)
    assert seq[2, 1:].abs().sum() == 0 and seq[1, 3:].abs().sum() == 0  # the padding's outputs are zeros

    weights = torch.randn_like(seq)  # a loss that reads every position and the sequence vector
    grads = torch.autograd.grad((seq * weights).sum() + sentence.pow(2).sum(), [x, *bilstm.parameters()])
    ref_grads = torch.autograd.grad((ref_seq * weights).sum() + ref_sentence.pow(2).sum(), [x, *bilstm.parameters()])
    for grad, ref in zip(grads, ref_grads):
        torch.testing.assert_close(grad, ref, atol=1e-5, rtol=1e-4)


def test_a_narrow_bilstm_takes_the_fused_path_and_a_wide_one_the_packed_one(monkeypatch):
    bilstm = BiLSTM(8, 6)  # 3 units a direction
    x, mask = batch([4, 2], 8)
    taken = []
    for path in ("fused", "packed"):
        original = getattr(bilstm, path)
        monkeypatch.setattr(bilstm, path, lambda x, lengths, path=path, original=original: (
            taken.append(path), original(x, lengths))[1])
    narrow = bilstm(x, mask)
    monkeypatch.setattr(task_model, "FUSED_MAX_SIZE", 2)
    wide = bilstm(x, mask)
    assert taken == ["fused", "packed"]
    for a, b in zip(narrow, wide):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("path", ["fused", "packed"])
def test_padding_changes_nothing_and_an_empty_row_reads_its_first_position(path, monkeypatch):
    monkeypatch.setattr(task_model, "FUSED_MAX_SIZE", 256 if path == "fused" else 0)
    torch.manual_seed(1)
    bilstm = BiLSTM(8, 6).eval()
    x, mask = batch([4, 2], 8)
    with torch.no_grad():
        seq, sentence = bilstm(x, mask)
        wider = torch.cat([x, torch.randn(2, 5, 8)], dim=1)  # five more positions of noise, all padding
        wider_seq, wider_sentence = bilstm(wider, torch.cat([mask, torch.zeros(2, 5, dtype=torch.long)], dim=1))
        torch.testing.assert_close(wider_seq[:, :4], seq)
        assert wider_seq[:, 4:].abs().sum() == 0
        torch.testing.assert_close(wider_sentence, sentence)

        empty = torch.zeros_like(mask)
        empty[0] = mask[0]
        seq, sentence = bilstm(x, empty)
        ref_seq, ref_sentence = bilstm.packed(x, torch.tensor([4, 1]))
        torch.testing.assert_close(seq, ref_seq)
        torch.testing.assert_close(sentence, ref_sentence)
