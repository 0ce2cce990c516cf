"""The GRU-Transformer classifier (SPEC section 5): shapes, size, padding invariance."""
from __future__ import annotations

import pytest
import torch

from trainer.model import GRUTFM, count_parameters


def expected_parameters(F: int, H: int, C: int = 4) -> int:
    # proj (F+1)H + GRU 6H^2+6H + attention 4H^2+4H + feed-forward 2H^2+2H
    # + two layer norms 4H + final norm 2H + head (H+1)C  =  12H^2 + (F+19)H + (H+1)C
    return (F + 1) * H + 12 * H * H + 12 * H + 6 * H + (H + 1) * C


@pytest.mark.parametrize("F", [80, 512])
@pytest.mark.parametrize("H", [8, 16, 128])
def test_output_shape(F, H):
    torch.manual_seed(0)
    model = GRUTFM(F, hidden=H).eval()
    feats = torch.randn(3, 11, F)
    lengths = torch.tensor([11, 4, 7])
    with torch.no_grad():
        out = model(feats, lengths)
    assert out.shape == (3, 4)
    assert torch.isfinite(out).all()


def test_n_classes():
    model = GRUTFM(20, hidden=8, n_classes=7)
    assert model(torch.randn(2, 5, 20), torch.tensor([5, 2])).shape == (2, 7)


def test_parameter_counts():
    # SPEC: H from 8 to 128 gives 5k-265k parameters with the 512-d vq-wav2vec features.
    counts = {H: count_parameters(GRUTFM(512, hidden=H)) for H in range(8, 129, 8)}
    for H, n in counts.items():
        assert n == expected_parameters(512, H)
    assert 5_000 <= counts[8] < 5_100       # 5,052
    assert 265_000 <= counts[128] < 266_000  # 265,092
    assert all(counts[a] < counts[b] for a, b in zip(counts, list(counts)[1:]))


@pytest.mark.parametrize("H", [8, 16, 64])
def test_padding_invariance(H):
    """An utterance gets the same logits alone or padded in a batch with longer ones."""
    torch.manual_seed(1)
    F = 40
    model = GRUTFM(F, hidden=H).eval()
    lengths = [6, 13, 1, 9]
    T = max(lengths) + 3  # extra padding beyond the longest, too
    utts = [torch.randn(n, F) for n in lengths]
    batch = torch.full((len(utts), T, F), 123.0)  # garbage in the padding must not matter
    for i, u in enumerate(utts):
        batch[i, : len(u)] = u
    with torch.no_grad():
        batched = model(batch, torch.tensor(lengths))
        for i, u in enumerate(utts):
            alone = model(u.unsqueeze(0), torch.tensor([len(u)]))
            torch.testing.assert_close(batched[i], alone[0], atol=1e-5, rtol=0)


def test_padding_invariance_train_mode_without_dropout():
    """Same property through the slow (training) path, dropout switched off."""
    torch.manual_seed(2)
    model = GRUTFM(30, hidden=16)
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if isinstance(m, torch.nn.MultiheadAttention):
            m.dropout = 0.0  # a float attribute there, not a Dropout module
    model.train()
    u = torch.randn(5, 30)
    batch = torch.zeros(2, 12, 30)
    batch[0, :5] = u
    batch[1] = torch.randn(12, 30)
    with torch.no_grad():
        batched = model(batch, torch.tensor([5, 12]))
        alone = model(u.unsqueeze(0), torch.tensor([5]))
    torch.testing.assert_close(batched[0], alone[0], atol=1e-5, rtol=0)


def test_gradient_reaches_every_parameter():
    torch.manual_seed(3)
    model = GRUTFM(24, hidden=16).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    feats = torch.randn(4, 9, 24)
    lengths = torch.tensor([9, 3, 5, 8])
    loss = torch.nn.functional.cross_entropy(model(feats, lengths), torch.tensor([0, 1, 2, 3]))
    opt.zero_grad()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


@pytest.mark.parametrize("H", [7, 15, 129])
def test_odd_hidden_rejected(H):
    with pytest.raises(ValueError, match="even"):
        GRUTFM(512, hidden=H)


def test_bad_lengths_rejected():
    model = GRUTFM(10, hidden=8)
    with pytest.raises(ValueError):
        model(torch.randn(2, 5, 10), torch.tensor([5, 0]))
    with pytest.raises(ValueError):
        model(torch.randn(2, 5, 10), torch.tensor([6, 2]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_with_cpu_or_cuda_lengths():
    torch.manual_seed(4)
    model = GRUTFM(16, hidden=8).eval()
    feats = torch.randn(3, 7, 16)
    lengths = torch.tensor([7, 2, 4])
    with torch.no_grad():
        ref = model(feats, lengths)
        model.cuda()
        for lens in (lengths, lengths.cuda()):
            out = model(feats.cuda(), lens)
            torch.testing.assert_close(out.cpu(), ref, atol=1e-4, rtol=1e-4)


def test_classification_scores_equal_scikit_learn_float_for_float():
    """The trainer's WF1/UAR/per-class F1/confusion from one confusion matrix, against
    scikit-learn's functions the paper's numbers come from: equal bit for bit on random sets,
    classes missing from the labels, from the predictions, or from both, and a single sample."""
    import numpy as np
    from sklearn.metrics import confusion_matrix, f1_score, recall_score

    from shards.vocab import EMOTIONS
    from trainer.predict import classification_scores

    rng = np.random.default_rng(0)
    classes = list(range(len(EMOTIONS)))
    cases = [(np.array([2]), np.array([2])), (np.array([1]), np.array([3])),
             (np.zeros(7, np.int64), np.zeros(7, np.int64))]
    for trial in range(300):
        n = int(rng.integers(1, 120))
        label_pool = rng.choice(classes, size=int(rng.integers(1, len(classes) + 1)), replace=False)
        pred_pool = rng.choice(classes, size=int(rng.integers(1, len(classes) + 1)), replace=False)
        labels = rng.choice(label_pool, n)
        agree = rng.random(n) < rng.random()
        cases.append((labels, np.where(agree, labels, rng.choice(pred_pool, n))))
    for labels, predictions in cases:
        got = classification_scores(labels, predictions)
        present = sorted(set(labels.tolist()))
        assert got["wf1"] == float(f1_score(labels, predictions, average="weighted", labels=classes, zero_division=0))
        assert got["uar"] == float(recall_score(labels, predictions, average="macro", labels=present, zero_division=0))
        per_class = f1_score(labels, predictions, average=None, labels=classes, zero_division=0)
        assert list(got["f1_per_class"].values()) == [float(v) for v in per_class]
        assert got["confusion"] == confusion_matrix(labels, predictions, labels=classes).tolist()
        assert got["n"] == labels.size
    assert np.isnan(classification_scores(np.array([], np.int64), np.array([], np.int64))["wf1"])
