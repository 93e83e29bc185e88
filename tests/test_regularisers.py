"""Behaviour every regulariser shares, and the registry's error messages."""
import math

import pytest
import torch
from torch import nn

from qsd.regularisers import build, names, parameters, register

ALL = ["none", "dropout", "gaussian", "qsd"]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def test_registry_lists_builtins():
    assert set(ALL) <= set(names())
    assert parameters("qsd") == ["rate", "n", "cv", "alpha", "mapping", "granularity", "backend", "sampler"]


def test_register_adds_a_regulariser_in_one_place():
    @register("test_scale2")
    class Scale2(nn.Module):
        def forward(self, x):
            return 2 * x

    assert "test_scale2" in names()
    assert torch.equal(build("test_scale2")(torch.ones(2)), torch.full((2,), 2.0))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("shape", [(7,), (5, 3), (2, 3, 4, 5), (2, 3, 4)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_shape_dtype_and_eval_identity(name, shape, dtype):
    mod = build(name, rate=0.4)
    x = torch.randn(shape).to(dtype)
    y = mod.train()(x)
    assert y.shape == x.shape and y.dtype == dtype
    assert mod.eval()(x) is x


@pytest.mark.parametrize("name", ["dropout", "gaussian", "qsd"])
def test_rate_zero_is_identity_when_training(name):
    x = torch.randn(10, 10)
    assert torch.equal(build(name, rate=0.0).train()(x), x)


@pytest.mark.parametrize("name", ["dropout", "gaussian", "qsd"])
def test_gradient_equals_mask(name):
    x = torch.ones(64, 32, requires_grad=True)
    y = build(name, rate=0.5).train()(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())


@pytest.mark.parametrize("name", ["dropout", "gaussian", "qsd"])
def test_reproducible_under_seed(name):
    mod = build(name, rate=0.5).train()
    x = torch.ones(100, 100)
    torch.manual_seed(7)
    a = mod(x)
    torch.manual_seed(7)
    assert torch.equal(a, mod(x))
    assert not torch.equal(a, mod(x))


@pytest.mark.parametrize("name", ["dropout", "gaussian", "qsd"])
def test_channel_granularity_shares_one_value_per_map(name):
    x = torch.ones(16, 8, 5, 6)
    y = build(name, rate=0.5, granularity="channel").train()(x)
    assert torch.equal(y, y[:, :, :1, :1].expand_as(y))
    assert y[:, :, 0, 0].unique().numel() > 1


@pytest.mark.parametrize("name", ["dropout", "gaussian", "qsd"])
def test_synapse_granularity_masks_each_connection_of_the_linear_layer_it_feeds(name):
    """y = (W * m) x + b with one mask value per connection, drawn per step and shared by the batch's
    examples; the identity's layer in eval mode; no gradient reaches a dropped connection."""
    import torch.nn.functional as F

    from qsd.models.synapse import SynapticLinear, regularised_linear

    torch.manual_seed(0)
    layer, = regularised_linear(build(name, rate=0.5, granularity="synapse"), 300, 200)
    assert isinstance(layer, SynapticLinear) and len(regularised_linear(build(name, rate=0.5), 3, 2)) == 2
    x = torch.randn(1, 300).repeat(4, 1)  # four identical examples
    torch.manual_seed(1)
    y = layer.train()(x)
    torch.manual_seed(1)
    w = layer.reg(layer.weight)  # the same draw: one value per connection
    assert torch.allclose(y, F.linear(x, w, layer.bias)) and torch.equal(y, y[:1].expand_as(y))
    m = (w / layer.weight).detach()
    assert abs(m.mean().item() - 1.0) < 0.02 and m.unique().numel() > 1
    if name == "dropout":
        assert abs((m == 0).double().mean().item() - 0.5) < 0.01
        torch.manual_seed(1)
        layer(x).sum().backward()
        assert torch.equal(layer.weight.grad == 0, m == 0)
    assert torch.equal(layer.eval()(x), F.linear(x, layer.weight, layer.bias))


@pytest.mark.parametrize("name", ["dropout", "gaussian", "qsd"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_keeps_mean_one(name, dtype):
    torch.manual_seed(0)
    y = build(name, rate=0.5).train()(torch.ones(2_000_000, dtype=dtype))
    assert abs(y.double().mean().item() - 1.0) < 5e-3


def test_extra_repr_shows_every_parameter():
    text = repr(build("qsd", rate=0.25, n=3, cv=0.1, alpha=math.inf, mapping="failure", granularity="channel"))
    for part in ["rate=0.25", "n=3", "cv=0.1", "alpha=inf", "mapping=failure", "granularity=channel"]:
        assert part in text


BAD = [
    ("qsd", {"rate": 1.0}, "rate must be in [0, 1)"),
    ("qsd", {"rate": -0.1}, "rate must be in [0, 1)"),
    ("qsd", {"rate": float("nan")}, "rate must be a finite number"),
    ("qsd", {"rate": "0.5"}, "rate must be a number"),
    ("qsd", {"n": 0}, "n must be an integer >= 1"),
    ("qsd", {"n": 2.5}, "n must be an integer >= 1"),
    ("qsd", {"n": True}, "n must be an integer >= 1"),
    ("qsd", {"n": float("inf")}, "n must be an integer >= 1"),
    ("qsd", {"cv": -0.5}, "cv must be >= 0"),
    ("qsd", {"cv": "nan"}, "cv must be a number"),
    ("qsd", {"alpha": 0.0}, "alpha must be > 0 or inf"),
    ("qsd", {"alpha": -1}, "alpha must be > 0 or inf"),
    ("qsd", {"alpha": float("-inf")}, "alpha must be a finite number or inf"),
    ("qsd", {"mapping": "median"}, "mapping must be one of ['mean', 'failure', 'variance']"),
    ("qsd", {"granularity": "neuron"}, "granularity must be one of ['unit', 'channel', 'synapse']"),
    ("qsd", {"p": 0.5}, "allowed: ['rate', 'n', 'cv', 'alpha', 'mapping', 'granularity', 'backend', 'sampler']"),
    ("dropout", {"rate": 1.5}, "rate must be in [0, 1)"),
    ("gaussian", {"rate": None}, "rate must be a number"),
    ("none", {"rate": 1.0}, "rate must be in [0, 1)"),
    ("none", {"p": 0.5}, "allowed: ['rate', 'granularity']"),
    ("dropconnect", {}, "choose one of ['dropout', 'gaussian', 'none', 'qsd'"),
]


@pytest.mark.parametrize("name,params,message", BAD)
def test_bad_parameters_say_what_is_allowed(name, params, message):
    with pytest.raises(ValueError) as err:
        build(name, **params)
    assert message in str(err.value)


def test_alpha_inf_may_be_a_string_from_the_command_line():
    assert build("qsd", alpha="inf").alpha == math.inf


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ALL)
def test_cuda(name):
    torch.manual_seed(0)
    mod = build(name, rate=0.5).cuda().train()
    for dtype in DTYPES:
        x = torch.ones(1_000_000, device="cuda", dtype=dtype, requires_grad=True)
        y = mod(x)
        y.sum().backward()
        assert y.device.type == "cuda" and y.dtype == dtype
        assert abs(y.double().mean().item() - 1.0) < 1e-2
    if name == "qsd":
        m = mod(torch.ones(4_000_000, device="cuda")).double()
        exact = mod.moments()
        assert abs(m.var().item() - exact["var"]) < 0.01
        assert abs((m == 0).double().mean().item() - exact["p_zero"]) < 1e-3
