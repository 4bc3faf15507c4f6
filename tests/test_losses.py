"""Loss and metrics per task kind, against torch references."""

import math

import pytest
import torch
import torch.nn.functional as F

from rnnlab import losses, models
from rnnlab.data import Batch


def tiny_lm(vocab=7, hidden=6):
    torch.manual_seed(0)
    return models.build("lm", vocab_size=vocab, backbone="lstm", hidden_size=hidden,
                        num_layers=1)


def test_lm_masked_loss_accuracy_and_dependency_accuracy():
    model = tiny_lm()
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 7, (3, 9), generator=g)
    y = torch.randint(0, 7, (3, 9), generator=g)
    mask = torch.rand(3, 9, generator=g) > 0.3
    dep = mask & (torch.rand(3, 9, generator=g) > 0.5)
    dist = torch.where(dep, torch.randint(1, 3, (3, 9), generator=g), 0)
    loss, m = losses.loss_and_metrics(model, "lm", Batch(x, y, mask, dep_mask=dep, distance=dist))
    logits = model(x)[0]
    ref = F.cross_entropy(logits[mask], y[mask])
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    hit = logits.argmax(-1) == y
    assert m["acc"] == pytest.approx(hit[mask].float().mean().item())
    assert m["dep_acc"] == pytest.approx(hit[dep].float().mean().item())
    for d, acc in m["dep_acc_by_distance"].items():
        assert acc == pytest.approx(hit[dep & (dist == d)].float().mean().item())
    assert m["bpc"] == pytest.approx(ref.item() / math.log(2), rel=1e-6)
    # the loss is differentiable
    loss.backward()
    assert model.decoder.weight.grad is not None


def test_classify_regress_seq2seq_losses():
    torch.manual_seed(0)
    clf = models.build("classifier", num_classes=3, vocab_size=5, hidden_size=4)
    x = torch.randint(0, 5, (6, 7))
    y = torch.randint(0, 3, (6,))
    loss, m = losses.loss_and_metrics(clf, "classify", Batch(x, y))
    logits = clf(x)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    assert m["acc"] == pytest.approx((logits.argmax(-1) == y).float().mean().item())

    reg = models.build("regressor", input_size=2, hidden_size=4)
    xf, yf = torch.randn(5, 6, 2), torch.randn(5)
    loss, m = losses.loss_and_metrics(reg, "regress", Batch(xf, yf))
    pred = reg(xf)
    assert loss.item() == pytest.approx(((pred - yf) ** 2).mean().item(), rel=1e-6)
    assert m["mse"] == pytest.approx(loss.item(), rel=1e-6)
    assert m["acc"] == pytest.approx(((pred - yf).abs() < 0.04).float().mean().item())

    s2s = models.build("seq2seq", src_vocab=6, tgt_vocab=6, hidden_size=5)
    src = torch.randint(0, 6, (4, 5))
    y_in, y = torch.randint(0, 6, (4, 3)), torch.randint(0, 6, (4, 3))
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], dtype=torch.bool)
    lengths = torch.tensor([5, 4, 3, 5])
    loss, m = losses.loss_and_metrics(s2s, "seq2seq", Batch(src, y, mask, lengths, y_in=y_in))
    logits = s2s(src, lengths, y_in)
    assert loss.item() == pytest.approx(F.cross_entropy(logits[mask], y[mask]).item(), rel=1e-6)
