"""Stacked training (stack.py) on tiny generated data: a member of a stack is its single run, to float
rounding: same losses step by step, same run folder; a member that diverges leaves the others
alone; a stack killed part-way resumes to the numbers of an uninterrupted one."""
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from qsd import runstore, train
from qsd.stack import NotStackable, StackedLSTM, member_state, stack_model, Members
from qsd.train import fit, fit_group

from .test_train import config

# a few steps: 3 epochs of 2 batches of 16 (with batch norm, rounding differences grow about twofold a step
# from there: a dozen steps in, they reach 1e-5)
STEPS = ["scale=smoke", "data.limit_train=null", "data.limit_eval=null", "train.batch_size=16", "train.max_steps=2",
         "train.epochs=3"]
MEMBERS = [("none", 0), ("dropout", 1), ("qsd", 2)]
KINDS = {  # every model kind that stacks, at a size the tiny data trains in seconds
    "mlp": ["experiment=mlp_mnist", "model.widths=[32,32]"],
    "cnn": ["experiment=cnn_fashion", "model.channels=[4,8,8]", "model.fc=16"],
    "cnn_batch_norm": ["experiment=cnn_fashion_extra", "model.channels=[4,8,8]", "model.fc=16"],
    "lstm_lm": ["experiment=lstm_ptb_small", "model.hidden=16"],
    "lstm_sentiment": ["experiment=lstm_rt", "model.embedding=16", "model.hidden=16"],
    "wrn": ["experiment=wrn_cifar10"],
}


def member_configs(tiny_root, runs, overrides, members=MEMBERS, extra=()):
    return [config(tiny_root, runs, *overrides, *STEPS, f"regulariser={reg}", f"seed={seed}", *extra)
            for reg, seed in members]


def history(cfg) -> list[dict]:
    return [json.loads(line) for line in (runstore.run_dir(cfg) / "metrics.jsonl").read_text().splitlines()]


def close(a: float, b: float, rel: float = 1e-5) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)


def assert_same_runs(stacked: list, single: list, rel: float = 1e-5) -> None:
    """Each stacked member's summary and per-epoch metrics equal its single run's (to ``rel``)."""
    for s, r in zip(stacked, single):
        assert s["identity"] == r["identity"] and s["status"] == r["status"] and s["epochs_done"] == r["epochs_done"]
        assert close(s[f"test_{s['metric']}"], r[f"test_{r['metric']}"], 1e-4), (s, r)
        assert s["stack"] == 3 and r["stack"] == 1


def assert_same_histories(cfgs, refs) -> None:
    """Each run's per-epoch train and validation losses equal its reference run's (to 1e-5)."""
    for cfg, ref in zip(cfgs, refs, strict=True):
        for row, want in zip(history(cfg), history(ref), strict=True):
            assert close(row["train_loss"], want["train_loss"]) and close(row["valid_loss"], want["valid_loss"])


def killed(monkeypatch, n: int, train) -> None:
    """Call ``train()`` until the n-th checkpoint is written, then interrupt it (a simulated kill)."""
    real_save, calls = runstore.save_checkpoint, {"n": 0}

    def save_then_die(path, state):
        real_save(path, state)
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(runstore, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train()
    monkeypatch.setattr(runstore, "save_checkpoint", real_save)


def step_losses(monkeypatch) -> list:
    """Record every training step's loss sums, one list per step (one value, or one per member)."""
    from qsd import tasks

    seen = []
    for cls in (tasks.Task, tasks.StackedTask):
        def step(self, model, batch, state=None, real=cls.step):
            out = real(self, model, batch, state)
            if model.training:
                seen.append(out[1].view(-1).tolist())
            return out
        monkeypatch.setattr(cls, "step", step)
    return seen


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_stack_of_three_trains_as_its_three_single_runs(tiny_root, tmp_path, kind, monkeypatch):
    overrides = KINDS[kind]
    seen = step_losses(monkeypatch)
    single = [fit(c) for c in member_configs(tiny_root, tmp_path / "single", overrides)]
    per_run = [[], [], []]
    for g, steps in enumerate((seen[:6], seen[6:12], seen[12:18])):
        per_run[g] = [v for (v,) in steps]
    cfgs = member_configs(tiny_root, tmp_path / "stacked", overrides)
    seen.clear()
    stacked = fit_group(cfgs)
    assert len(seen) == 6 and all(len(step) == 3 for step in seen)
    for g in range(3):  # every step's loss, member by member
        for want, got in zip(per_run[g], [step[g] for step in seen], strict=True):
            assert close(got, want), (kind, g, got, want)
    assert_same_runs(stacked, single)
    refs = member_configs(tiny_root, tmp_path / "single", overrides)
    assert [runstore.run_dir(c).name for c in cfgs] == [runstore.run_dir(r).name for r in refs]  # not in the identity
    assert_same_histories(cfgs, refs)


def test_a_diverging_member_stops_alone(tiny_root, tmp_path, monkeypatch):
    overrides = KINDS["mlp"]
    single = [fit(c) for c in member_configs(tiny_root, tmp_path / "single", overrides)]
    real = train.build_model_from

    def poisoned(cfg, dims):  # seed 1's weights are not finite: its first loss is NaN
        model = real(cfg, dims)
        if cfg.seed == 1:
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))
        return model

    monkeypatch.setattr(train, "build_model_from", poisoned)
    stacked = fit_group(member_configs(tiny_root, tmp_path / "stacked", overrides))
    assert [s["status"] for s in stacked] == ["completed", "diverged", "completed"]
    assert stacked[1]["epochs_done"] == 1
    cfgs = member_configs(tiny_root, tmp_path / "stacked", overrides)
    refs = member_configs(tiny_root, tmp_path / "single", overrides)
    for g in (0, 2):  # the others train on as their single runs do
        assert close(stacked[g]["test_error"], single[g]["test_error"], 1e-4)
    assert_same_histories([cfgs[0], cfgs[2]], [refs[0], refs[2]])


def test_a_stack_resumes_single_runs_checkpoints(tiny_root, tmp_path, monkeypatch):
    """Single runs stopped after their first epoch finish as one stack, with their uninterrupted numbers."""
    overrides = KINDS["mlp"]
    whole = [fit(c) for c in member_configs(tiny_root, tmp_path / "whole", overrides)]
    cfgs = member_configs(tiny_root, tmp_path / "split", overrides)
    for cfg in cfgs:
        killed(monkeypatch, 1, lambda cfg=cfg: fit(cfg))
    resumed = fit_group(cfgs)
    assert [s["stack"] for s in resumed] == [3, 3, 3]
    for r, w in zip(resumed, whole):
        assert close(r["test_error"], w["test_error"], 1e-4)
    assert_same_histories(cfgs, member_configs(tiny_root, tmp_path / "whole", overrides))


def test_a_killed_stack_resumes_to_the_uninterrupted_numbers(tiny_root, tmp_path, monkeypatch):
    overrides = KINDS["mlp"]
    whole = fit_group(member_configs(tiny_root, tmp_path / "whole", overrides))
    cfgs = member_configs(tiny_root, tmp_path / "killed", overrides)
    killed(monkeypatch, 5, lambda: fit_group(cfgs))  # in epoch 2, after two of the three members' checkpoints
    assert [runstore.load_checkpoint(runstore.run_dir(c))["epoch"] for c in cfgs] == [2, 2, 1]
    names = [runstore.run_dir(c).name for c in cfgs]  # whose stream each saved (train.cuda_stream)
    assert all(runstore.load_checkpoint(runstore.run_dir(c))["stack_members"] == names for c in cfgs)
    resumed = fit_group(cfgs)  # members resuming from epochs 2 and 1: two stacks
    for r, w in zip(resumed, whole):
        assert r["identity"] == w["identity"] and close(r["test_error"], w["test_error"], 1e-4)
    assert_same_histories(cfgs, member_configs(tiny_root, tmp_path / "whole", overrides))


def test_a_stack_killed_mid_epoch_resumes_to_the_uninterrupted_numbers(tiny_root, tmp_path, monkeypatch):
    from qsd import tasks

    overrides = KINDS["cnn_batch_norm"]
    whole = fit_group(member_configs(tiny_root, tmp_path / "whole", overrides))
    cfgs = member_configs(tiny_root, tmp_path / "killed", overrides)
    real_step, calls = tasks.StackedTask.step, {"n": 0}

    def step_then_die(self, model, batch, state=None):  # killed in epoch 2's second step (its first is done)
        calls["n"] += model.training
        if calls["n"] == 4 and model.training:
            raise KeyboardInterrupt("simulated kill")
        return real_step(self, model, batch, state)

    monkeypatch.setattr(tasks.StackedTask, "step", step_then_die)
    with pytest.raises(KeyboardInterrupt):
        fit_group(cfgs)
    monkeypatch.setattr(tasks.StackedTask, "step", real_step)
    resumed = fit_group(cfgs)
    for r, w in zip(resumed, whole):
        assert r["identity"] == w["identity"] and close(r["test_error"], w["test_error"], 1e-4)
    assert_same_histories(cfgs, member_configs(tiny_root, tmp_path / "whole", overrides))


def test_a_single_run_resumes_a_stack_members_checkpoint(tiny_root, tmp_path, monkeypatch):
    """A member's checkpoint is its single run's: a stack stopped after epoch 1 finishes one run at a time."""
    overrides = KINDS["mlp"]
    whole = [fit(c) for c in member_configs(tiny_root, tmp_path / "whole", overrides)]
    cfgs = member_configs(tiny_root, tmp_path / "split", overrides)
    killed(monkeypatch, 3, lambda: fit_group(cfgs))
    for cfg, w in zip(cfgs, whole):
        assert close(fit(cfg)["test_error"], w["test_error"], 1e-4)


def test_parts_of_a_cuda_stack_resumed_apart_draw_streams_of_their_own():
    """A stack's members on CUDA share one stream, saved whole in each member's checkpoint: it goes on only in
    the job that saved it (the stack whole, in order, or a run alone), never in two jobs at once, where the
    parts of a stack resumed apart would draw alike; those draw from a new stream seeded by their first
    member's seed and the epoch, apart from every fresh run's seed."""
    def member(name: str, seed: int, saved_by: list[str] | None = None, fresh: bool = False):
        ckpt = None if fresh else {"epoch": 4, **({"stack_members": saved_by} if saved_by else {})}
        return SimpleNamespace(path=Path(name), cfg=SimpleNamespace(seed=seed), ckpt=ckpt, start=0 if fresh else 4,
                               rng_cuda=f"{name}'s saved stream")

    stack = ["a", "b"]
    jobs = {
        "a fresh run": ([member("a", 0, fresh=True)], "a's saved stream"),
        "the stack whole": ([member("a", 0, stack), member("b", 1, stack)], "a's saved stream"),
        "single runs stacked": ([member("a", 0, ["a"]), member("b", 1, ["b"])], "a's saved stream"),
        "a twin alone's end": ([member("a45", 0, ["a30"])], "a45's saved stream"),
        "one part alone": ([member("a", 0, stack)], 1_000_003 + 4),
        "the other part alone": ([member("b", 1, stack)], 2 * 1_000_003 + 4),
        "the stack reordered": ([member("b", 1, stack), member("a", 0, stack)], 2 * 1_000_003 + 4),
        "a checkpoint naming no members": ([member("a", 0)], 1_000_003 + 4),
    }
    for case, (members, want) in jobs.items():
        assert train.cuda_stream(members) == want, case


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_two_runs_of_a_cuda_stack_resumed_apart_do_not_draw_alike(tiny_root, tmp_path, monkeypatch):
    """Two dropout runs (seeds 0 and 1, so the same draws a step) stacked on CUDA, killed after their first
    epoch and finished one by one: had each gone on with the stack's saved stream, they would end on one
    generator state."""
    cfgs = member_configs(tiny_root, tmp_path, KINDS["mlp"], members=[("dropout", 0), ("dropout", 1)],
                          extra=["device=cuda", "train.cuda_graphs=false"])
    killed(monkeypatch, 2, lambda: fit_group(cfgs))
    assert [runstore.load_checkpoint(runstore.run_dir(c))["epoch"] for c in cfgs] == [1, 1]
    for cfg in cfgs:
        assert fit(cfg)["status"] == "completed"
    ends = [runstore.load_checkpoint(runstore.run_dir(c))["rng_cuda"] for c in cfgs]
    assert not torch.equal(ends[0], ends[1])


def test_runs_that_differ_in_more_than_seed_regulariser_and_rates_train_apart(tiny_root, tmp_path):
    cfgs = [config(tiny_root, tmp_path, *KINDS["mlp"], *STEPS, f"optim.lr={lr}", f"seed={seed}")
            for lr, seed in ((0.1, 0), (0.2, 0), (0.1, 1))]
    assert [s["stack"] for s in fit_group(cfgs)] == [2, 1, 2]


def test_a_model_without_a_stacked_form_trains_its_runs_one_by_one(tiny_root, tmp_path):
    cfgs = member_configs(tiny_root, tmp_path, KINDS["mlp"], members=[("qsd", 0), ("qsd", 1)],
                          extra=["regulariser.granularity=synapse"])
    assert [s["stack"] for s in fit_group(cfgs)] == [1, 1]


def test_a_bidirectional_lstm_trains_its_runs_one_by_one(tiny_root, tmp_path):
    cfgs = member_configs(tiny_root, tmp_path, ["experiment=lstm_rt", "model.bidirectional=true"],
                          members=[("dropout", 0), ("qsd", 1)])
    assert [(s["status"], s["stack"]) for s in fit_group(cfgs)] == [("completed", 1), ("completed", 1)]


def test_stacked_lstm_computes_what_nn_lstm_does():
    torch.manual_seed(0)
    lstms = [torch.nn.LSTM(5, 7) for _ in range(3)]
    stacked = stack_model(lstms, Members(None))
    x = torch.randn(3, 11, 4, 5)
    state = (torch.randn(3, 1, 4, 7), torch.randn(3, 1, 4, 7))
    out, (h, c) = stacked(x, state)
    for g, lstm in enumerate(lstms):
        want, (wh, wc) = lstm(x[g], (state[0][g], state[1][g]))
        torch.testing.assert_close(out[g], want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close((h[g], c[g]), (wh, wc), rtol=1e-5, atol=1e-6)
    assert isinstance(stacked, StackedLSTM)
    with pytest.raises(NotStackable, match="one-directional"):
        stack_model([torch.nn.LSTM(5, 7, bidirectional=True)] * 2, Members(None))


def test_member_state_is_the_single_models_state():
    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)) for _ in range(2)]
    stacked = stack_model(nets, Members(None))
    for g, net in enumerate(nets):
        own = member_state(stacked.state_dict(), g)
        assert own.keys() == net.state_dict().keys()
        for k, v in net.state_dict().items():
            assert torch.equal(own[k], v)
