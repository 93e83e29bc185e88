"""The loss each task minimises: a language model's objective is Zaremba's (summed over the BPTT
steps, averaged over the batch) unless told otherwise; metrics stay per token."""
import math

import pytest
import torch
import torch.nn.functional as F

from qsd.models import LSTMLanguageModel
from qsd.regularisers import build
from qsd.tasks import Task


def _lm_and_batch(T: int = 7, B: int = 3, V: int = 11):
    torch.manual_seed(0)
    model = LSTMLanguageModel(lambda slot, **kw: build("none", rate=0.0), vocab_size=V, hidden=8, layers=2)
    x, y = torch.randint(0, V, (T, B)), torch.randint(0, V, (T, B))
    return model, (x, y)


@pytest.mark.parametrize("reduction, divisor", [("time_sum", "B"), ("token_mean", "TB")])
def test_lm_objective_reduction(reduction, divisor):
    model, (x, y) = _lm_and_batch()
    T, B = y.shape
    task = Task("lm", {}, {}, "ppl", reduction)
    objective, loss_sum, _, _ = task.step(model, (x, y))
    logits, _ = model(x)
    token_losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
    assert loss_sum.item() == pytest.approx(token_losses.sum().item(), rel=1e-6)
    expected = token_losses.sum() / (B if divisor == "B" else T * B)
    assert objective.item() == pytest.approx(expected.item(), rel=1e-6)
    # perplexity is per token whatever the objective
    m = task.metrics(loss_sum.item(), y.numel(), 0.0)
    assert m["ppl"] == pytest.approx(math.exp(token_losses.mean().item()), rel=1e-5)


def test_time_sum_gradient_is_T_times_token_mean():
    """At lr 1 and clip 5 this factor is what separates Zaremba's recipe from a per-token mean."""
    grads = {}
    for reduction in ("time_sum", "token_mean"):
        model, batch = _lm_and_batch()
        Task("lm", {}, {}, "ppl", reduction).step(model, batch)[0].backward()
        grads[reduction] = torch.cat([p.grad.flatten() for p in model.parameters()])
    T = batch[1].size(0)
    torch.testing.assert_close(grads["time_sum"], T * grads["token_mean"], rtol=1e-4, atol=1e-7)


def test_lm_experiments_use_zaremba_reduction():
    from hydra import compose, initialize_config_dir

    from qsd.train import CONFIG_DIR

    for exp in ("lstm_ptb", "lstm_ptb_small"):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("train", overrides=[f"experiment={exp}"])
        assert cfg.train.lm_loss == "time_sum" and cfg.optim.clip == 5.0 and cfg.optim.lr == 1.0
