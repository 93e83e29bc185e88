"""QSD's mask against the closed forms of ../shared/spec/qsd-method.md, computed here independently."""
import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from qsd.regularisers import build
from qsd.regularisers.qsd import count_thresholds, release_count_pmf

GRID = [  # rate, n, cv, alpha, mapping
    (0.5, 4, 0.5, 1.0, "mean"),
    (0.5, 4, 0.0, 1.0, "mean"),
    (0.5, 4, 0.5, math.inf, "mean"),
    (0.2, 8, 1.5, 0.5, "mean"),
    (0.5, 4, 0.5, 1.0, "failure"),
    (0.5, 3, 0.0, math.inf, "failure"),
    (0.3, 6, 0.3, 2.0, "failure"),
    (0.5, 1, 0.0, math.inf, "mean"),
    (0.5, 2, 2.0, 4.0, "mean"),
    (0.5, 4, 0.5, 1.0, "variance"),
    (0.3, 8, 1.0, math.inf, "variance"),
    (0.2, 3, 0.0, 0.5, "variance"),
    (0.3, 7, 0.5, 0.3, "mean"),  # P(m = 0) = 3.8e-17: a sampler on a 2^-24 grid shows zeros
]


def closed_form(p: np.ndarray, cv: float) -> dict[str, float]:
    n, pbar = len(p), p.mean()
    return {
        "mean": 1.0,
        "var": (n * pbar * (1 + cv**2) - np.sum(p**2)) / (n * pbar) ** 2,
        "p_zero": float(np.prod(1 - p)),
    }


@pytest.mark.parametrize("rate,n,cv,alpha,mapping", GRID)
def test_site_probs_follow_the_mapping(rate, n, cv, alpha, mapping):
    p = build("qsd", rate=rate, n=n, cv=cv, alpha=alpha, mapping=mapping).site_probs.numpy()
    assert p.shape == (n,) and np.all((p > 0) & (p < 1))
    if mapping == "mean":
        assert p.mean() == pytest.approx(1 - rate, abs=1e-12)
    elif mapping == "variance":
        assert closed_form(p, cv)["var"] == pytest.approx(rate / (1 - rate), rel=1e-9)
    else:
        assert np.prod(1 - p) == pytest.approx(rate, rel=1e-9)
    if math.isinf(alpha):
        assert np.ptp(p) == pytest.approx(0, abs=1e-12)
        if mapping == "failure":
            assert p[0] == pytest.approx(1 - rate ** (1 / n))
        if mapping == "variance":  # (1 + cv^2 - p) / (n p) = r / (1 - r)
            assert p[0] == pytest.approx((1 + cv**2) / (1 + n * rate / (1 - rate)))


def test_variance_mapping_with_one_site_and_fixed_quanta_is_dropout():
    p = build("qsd", rate=0.3, n=1, cv=0.0, mapping="variance").site_probs.numpy()
    assert p[0] == pytest.approx(0.7)


@pytest.mark.parametrize("rate,n,cv", [(0.1, 1, 0.5), (0.2, 1, 0.5), (0.5, 2, 1.5)])
def test_variance_mapping_refuses_unreachable_targets(rate, n, cv):
    with pytest.raises(ValueError, match=r"cannot reach Var\(m\) = r/\(1-r\).*needs r/\(1-r\) > cv\^2/n"):
        build("qsd", rate=rate, n=n, cv=cv, mapping="variance")


def test_site_probs_are_beta_quantiles():
    # Beta(1, 1) at pbar = 0.5 is uniform: quantiles (j - 1/2)/n, already centred.
    p = build("qsd", rate=0.5, n=4, alpha=1.0).site_probs.numpy()
    np.testing.assert_allclose(p, [0.125, 0.375, 0.625, 0.875], atol=1e-12)
    # A skewed case with no clipping: quantiles shifted to mean pbar.
    a, pbar, n = 3.0, 0.7, 5
    q = stats.beta.ppf((np.arange(1, n + 1) - 0.5) / n, a, a * (1 - pbar) / pbar)
    p = build("qsd", rate=1 - pbar, n=n, alpha=a).site_probs.numpy()
    np.testing.assert_allclose(p, q - q.mean() + pbar, atol=1e-10)


def test_release_count_pmf_matches_enumeration():
    p = np.array([0.1, 0.45, 0.7, 0.95])
    brute = np.zeros(5)
    for bits in itertools.product([0, 1], repeat=4):
        brute[sum(bits)] += np.prod([pj if b else 1 - pj for pj, b in zip(p, bits)])
    np.testing.assert_allclose(release_count_pmf(p), brute, atol=1e-15)


@pytest.mark.parametrize("rate,n,cv,alpha,mapping", GRID)
def test_moments_match_closed_form(rate, n, cv, alpha, mapping):
    mod = build("qsd", rate=rate, n=n, cv=cv, alpha=alpha, mapping=mapping)
    expect = closed_form(mod.site_probs.numpy(), cv)
    for key, value in mod.moments().items():
        assert value == pytest.approx(expect[key], rel=1e-12, abs=1e-15), key


@pytest.mark.parametrize("rate,n,cv,alpha,mapping", GRID)
def test_release_count_is_sampled_exactly_to_2_pow_minus_32(rate, n, cv, alpha, mapping):
    mod = build("qsd", rate=rate, n=n, cv=cv, alpha=alpha, mapping=mapping)
    pmf = release_count_pmf(mod.site_probs.numpy())
    t = mod.thresholds.numpy()
    assert t.dtype == np.int64 and np.all(np.diff(t) >= 0) and 0 <= t[0] and t[-1] <= 2**32
    sampled = np.diff(np.concatenate([[0], t, [2**32]])) / 2**32  # P(K = k) for a uniform 32-bit word
    assert np.max(np.abs(sampled - pmf)) <= 2**-32


def test_p_zero_below_the_grid_is_never_sampled():
    p = build("qsd", rate=0.3, n=7, alpha=0.3).site_probs.numpy()
    assert 0 < np.prod(1 - p) < 1e-16 and count_thresholds(p)[0] == 0


SAMPLERS = [  # backend, device: the CPU kernel, the portable torch ops, the fused CUDA kernel
    ("kernel", "cpu"),
    ("torch", "cpu"),
    pytest.param("kernel", "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")),
]


@pytest.mark.parametrize("backend,device", SAMPLERS)
@pytest.mark.parametrize("rate,n,cv,alpha,mapping", GRID)
def test_sampled_mask_matches_moments(rate, n, cv, alpha, mapping, backend, device):
    torch.manual_seed(0)
    mod = build("qsd", rate=rate, n=n, cv=cv, alpha=alpha, mapping=mapping, backend=backend).to(device).train()
    m = mod(torch.ones(4_000_000, dtype=torch.float32, device=device)).double().cpu()
    exact, N = mod.moments(), m.numel()
    mean, var = m.mean().item(), m.var().item()
    mu4 = ((m - mean) ** 4).mean().item()
    zero = (m == 0).double().mean().item()
    assert abs(mean - 1.0) < 4 * math.sqrt(exact["var"] / N)
    # (+1e-5: a symmetric two-point mask, n=1 at r=0.5, has mu4 = var^2 and no sampling spread)
    assert abs(var - exact["var"]) < 4 * math.sqrt(max(mu4 - var**2, 0.0) / N) + 1e-5
    pz = exact["p_zero"]
    assert abs(zero - pz) < 4 * math.sqrt(pz * (1 - pz) / N) + 1e-12


def test_n1_cv0_is_exactly_dropout():
    torch.manual_seed(1)
    r = 0.3
    x = torch.randn(1_000_000)
    y = build("qsd", rate=r, n=1, cv=0.0, alpha=math.inf).train()(x)
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / (1 - r), rtol=1e-6, atol=0)
    assert abs((~kept).double().mean().item() - r) < 4 * math.sqrt(r * (1 - r) / x.numel())
    mod = build("qsd", rate=r, n=1, cv=0.0)
    assert mod.moments()["var"] == pytest.approx(r / (1 - r))
