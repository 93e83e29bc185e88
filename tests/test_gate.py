"""The baseline-sanity gate on hand-made validation curves with known answers."""
import pytest

from qsd.report.gate import TOLERANCE, baseline_gate, further_gain, percent

FLAT = [10.0, 6.0, 4.0, 3.0, 2.5, 2.2, 2.1, 2.05, 2.04, 2.03]  # last 2 epochs gain 1% on the best before
NONE = [9.0, 5.0, 3.5, 3.0, 2.9, 2.8, 2.8, 2.8, 2.8, 2.8]


def seeds(curve, shift=0.0, n=5):
    return {s: [v + shift * s for v in curve] for s in range(n)}


def test_sane_converged_baseline_passes():
    assert baseline_gate(seeds(FLAT, 0.01), seeds(NONE)) is None
    assert baseline_gate(seeds(FLAT)) is None  # no `none` run: convergence only


def test_baseline_worse_than_none_is_not_comparable():
    reason = baseline_gate(seeds(FLAT), seeds([v - 1.0 for v in FLAT]))
    assert reason == "dropout does not beat none on validation (2.03 vs 1.03)"


def test_baseline_equal_to_none_is_not_comparable():
    assert "does not beat none" in baseline_gate(seeds(FLAT), seeds(FLAT))


def test_still_improving_baseline_is_not_converged():
    rising = FLAT[:8] + [1.9, 1.8]  # final 2 epochs: best 1.8 vs 2.05 before, 12% better
    reason = baseline_gate(seeds(rising), seeds(NONE))
    assert reason.startswith("dropout not converged (validation still improved 12.2% over the final 2 of 10 epochs")


def test_tolerance_boundary():
    before = 2.0  # best of the first 8 epochs
    curve = [10.0, 5.0, 3.0, 2.5, 2.2, 2.1, 2.05, before, 2.01, before * (1 - TOLERANCE) + 1e-9]
    assert baseline_gate(seeds(curve)) is None
    curve[-1] = before * (1 - TOLERANCE) - 1e-6
    assert "not converged" in baseline_gate(seeds(curve))


def test_overfitting_after_the_best_epoch_still_counts_as_converged():
    overfit = [10.0, 5.0, 3.0, 2.0, 1.9, 2.0, 2.1, 2.2, 2.3, 2.4]
    assert baseline_gate(seeds(overfit)) is None


def test_seed_mean_curve_is_judged_not_single_seeds():
    noisy = {0: FLAT[:9] + [1.5], 1: FLAT[:9] + [2.56]}  # mean of the last epoch 2.03
    assert baseline_gate(noisy) is None


def test_failures_short_runs_and_missing_runs():
    assert baseline_gate(seeds(FLAT, n=4), seeds(NONE), failed=1) == "dropout failed or diverged in 1 of 5 seeds"
    assert baseline_gate(seeds(FLAT[:4])) == "too few epochs (4) to judge convergence"
    assert baseline_gate({}) == "no completed dropout runs"


@pytest.mark.parametrize("tail_epochs,epochs", [(1, 5), (2, 6), (2, 10), (3, 11)])
def test_tail_is_the_final_fifth_rounded_up(tail_epochs, epochs):
    curve = [10.0] * (epochs - tail_epochs) + [1.0] * tail_epochs
    assert f"over the final {tail_epochs} of {epochs} epochs" in baseline_gate(seeds(curve))


def test_longer_schedule_decides_where_every_seed_has_it():
    rising = FLAT[:8] + [1.9, 1.8]  # the tail test alone: 12% still improving
    flat_longer = seeds(rising + [1.8] * 5)  # 1.5x the epochs: the same final value
    assert baseline_gate(seeds(rising), seeds(NONE), longer=flat_longer) is None
    better_longer = seeds(rising + [1.7] * 5)  # 5.6% better with 1.5x the epochs
    reason = baseline_gate(seeds(FLAT), seeds(NONE), longer=better_longer)  # the tail test alone would pass
    assert reason.startswith("dropout not converged (validation still improved ")
    assert reason.endswith("with 1.5x the epochs (15, not 10))")


def test_longer_schedule_needs_every_seed_else_the_tail_test_decides():
    rising = FLAT[:8] + [1.9, 1.8]
    partial = {s: c for s, c in seeds(rising + [1.8] * 5).items() if s < 3}
    assert "over the final 2 of 10 epochs" in baseline_gate(seeds(rising), longer=partial)
    assert further_gain(seeds(rising), partial)[1] == "over the final 2 of 10 epochs"


def test_longer_schedule_tolerance_and_lost_runs():
    base = seeds(FLAT)  # final 2.03
    assert baseline_gate(base, longer=seeds(FLAT + [2.03 * (1 - TOLERANCE) + 1e-9] * 5)) is None
    assert "not converged" in baseline_gate(base, longer=seeds(FLAT + [2.03 * (1 - TOLERANCE) - 1e-6] * 5))
    assert baseline_gate(base, longer=seeds(FLAT + [2.0] * 5, n=4), longer_lost=1) == \
        "dropout trained 1.5x the epochs failed or diverged in 1 seeds"


def test_a_gain_beside_the_tolerance_shows_which_side_it_lies_on():
    assert percent(0.0197) == "1.97%" and percent(0.0204) == "2.04%"  # not "2.0%" for both
    assert percent(0.0213) == "2.1%" and percent(-0.0201) == "-2.0%" and percent(0.136) == "13.6%"
    curve = FLAT[:8] + [2.05 * (1 - 0.0204)] * 2  # the final 2 epochs 2.04% better than the best before
    assert "still improved 2.04% over the final 2" in baseline_gate(seeds(curve))
