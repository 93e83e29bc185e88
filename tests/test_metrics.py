"""Sparsity measures on hand-made activations with known answers."""
import pytest
import torch
from torch import nn

from qsd.metrics import SparsityMeter, hoyer, record_sparsity, weight_summary


def test_sparsity_meter_known_answers():
    a = torch.tensor([[0.0, 1.0, 0.0, 2.0],
                      [0.0, 0.0, 0.0, 3.0],
                      [0.0, 1.0, 1.0, 1.0]])
    m = SparsityMeter()
    m.update(a[:2])
    m.update(a[2:])
    r = m.result()
    assert r["zero_frac_example"] == pytest.approx((2 / 4 + 3 / 4 + 1 / 4) / 3)
    assert r["zero_frac_unit"] == pytest.approx((3 / 3 + 1 / 3 + 2 / 3 + 0) / 4)
    assert r["dead_frac"] == pytest.approx(1 / 4)
    assert r["units"] == 4


def test_hoyer_extremes():
    assert hoyer(torch.tensor([[0.0, 0.0, 5.0, 0.0]])).item() == pytest.approx(1.0)
    assert hoyer(torch.tensor([[2.0, 2.0, 2.0, 2.0]])).item() == pytest.approx(0.0)
    assert hoyer(torch.zeros(1, 4)).item() == pytest.approx(1.0)


def test_record_sparsity_hooks_every_relu():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.ReLU())
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.copy_(torch.tensor([-1.0, 1.0, -1.0, 1.0]))
    with record_sparsity(model) as meters:
        model(torch.randn(10, 3))
    assert meters["1"].result()["zero_frac_example"] == pytest.approx(0.5)
    assert meters["1"].result()["dead_frac"] == pytest.approx(0.5)
    model(torch.randn(2, 3))  # hooks are gone after the block
    assert meters["1"].n == 10


def test_weight_summary():
    lin = nn.Linear(10, 5)
    s = weight_summary(nn.Sequential(lin))["0"]
    assert s["weight"]["n"] == 50 and sum(s["weight"]["hist_counts"]) == 50
    assert s["bias"]["mean"] == pytest.approx(lin.bias.mean().item())
