"""Every figure, drawn from the collected files in ``results/<scale>/`` alone.

Each ``render_<id>(res, scale)`` reads CSVs in ``res`` and writes ``<id>.png/.pdf`` plus the table of
the numbers behind it (``<id>.csv/.md``). Values are means over seeds with 95% intervals.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from ..provenance import pair_commit
from ..regularisers import build
from . import recipes
from .compare import WITHHELD, Arm, arm, compare, read_collected, read_runs, recipe_comparison
from .gate import SHORT_RULE
from .select import (MATCHED, absent_reason, by_reg, is_default_qsd, main_runs, matched_runs, on_grid, ordered,
                     recipe_runs)
from .stats import mean_ci, paired_difference, proportion_ci, verdict
from .style import COLOURS, COLUMN_W, LABELS, plt, save
from .tables import group, read_csv, write_missing, write_table


ESTIMATE_KEY = "squares: mean, whiskers: 95% CI, dots: seeds"
PANEL_W = COLUMN_W / 2  # inches per estimate panel: two fill a paper column, four the page's width


def _estimate_panel(ax, values: dict[str, dict[int, float]], ylabel: str) -> list[dict]:
    """Each regulariser's mean with its 95% CI and its seeds, as points, on an axis fitted to them, seeds and
    whiskers included (a bar's length would claim a ratio to zero that a fitted axis does not show)."""
    rows = []
    for i, reg in enumerate(ordered(values)):
        s = mean_ci(values[reg].values())
        err = [[s["mean"] - s["lo"]], [s["hi"] - s["mean"]]] if s["n"] > 1 else None
        ax.errorbar(i, s["mean"], yerr=err, fmt="s", color=COLOURS.get(reg, "k"), markersize=6, capsize=4, lw=1.5)
        ax.scatter([i + 0.18] * len(values[reg]), list(values[reg].values()), s=6, color="k", zorder=3)
        rows.append({"regulariser": reg, **s})
    ax.set_xlim(-0.5, len(values) - 0.5)
    ax.set_xticks(range(len(values)), [LABELS.get(r, r).replace(" ", "\n") for r in ordered(values)])
    ax.set_ylabel(ylabel)
    return rows


def _curve_panel(ax, rows: list[dict], reg: str, value: str) -> list[tuple[int, dict]]:
    """One regulariser's seed-mean ``value`` by epoch with its 95% band; returns (epoch, mean_ci) pairs."""
    epochs = sorted({c["epoch"] for c in rows})
    stats = [mean_ci([c[value] for c in rows if c["epoch"] == e]) for e in epochs]
    ax.plot(epochs, [s["mean"] for s in stats], color=COLOURS.get(reg), label=LABELS.get(reg, reg))
    lo, hi = np.array([s["lo"] for s in stats]), np.array([s["hi"] for s in stats])
    if not np.isnan(lo).all():
        ax.fill_between(epochs, lo, hi, color=COLOURS.get(reg), alpha=0.2, lw=0)
    return list(zip(epochs, stats))


def plain_log_axis(ax) -> None:
    """Log scale with plain numbers (2, 3, 4) rather than 2 x 10^0."""
    from matplotlib.ticker import LogLocator, ScalarFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(plt.NullFormatter())


def render_fig1_masks(res: Path, scale: str) -> None:
    torch.manual_seed(0)
    cases = [("dropout", {}), ("qsd", {"n": 4, "cv": 0.0, "alpha": math.inf}), ("qsd", {}),
             ("qsd", {"n": 8}), ("qsd", {"cv": 1.0}), ("qsd", {"alpha": 0.3}), ("qsd", {"mapping": "failure"}),
             ("qsd", {"mapping": "variance"})]
    fig, axes = plt.subplots(len(cases), 1, figsize=(COLUMN_W, 0.95 * len(cases)), sharex=True, layout="constrained")
    rows = []
    for ax, (name, params) in zip(axes, cases):
        mod = build(name, rate=0.5, **params).train()
        m = mod(torch.ones(400_000)).double()
        exact = mod.moments() if name == "qsd" else {"mean": 1.0, "var": 1.0, "p_zero": 0.5}
        label = "dropout" if name == "dropout" else \
            f"QSD n={mod.n}, CV={mod.cv}, \u03b1={mod.alpha:g}, {mod.mapping} mapping"
        nz = m[m > 0].numpy()
        bins = np.linspace(0, 4, 81)
        ax.hist(nz, bins=bins, weights=np.full(len(nz), 1 / (len(m) * (bins[1] - bins[0]))), color=COLOURS[name])
        sampled = {"mean": m.mean().item(), "var": m.var().item(), "p_zero": (m == 0).double().mean().item()}
        ax.text(0.01, 0.95, label, transform=ax.transAxes, ha="left", va="top", fontsize=6, weight="bold")
        ax.text(0.99, 0.7, f"var {sampled['var']:.3f} (exact {exact['var']:.3f})\n"
                            f"P(m=0) {sampled['p_zero']:.3f} (exact {exact['p_zero']:.3f})",
                transform=ax.transAxes, ha="right", va="top", fontsize=6)
        ax.set_ylabel("density", fontsize=6)
        ax.set_ylim(0, 1.8 * max(ax.get_ylim()[1], 1e-9))
        rows.append({"mask": label, **{f"sampled_{k}": v for k, v in sampled.items()},
                     **{f"exact_{k}": v for k, v in exact.items()}})
    axes[-1].set_xlabel("mask value m > 0 (multiplies the unit's output; P(m = 0) given as text)")
    save(fig, res, "fig1_masks", scale, "400,000 draws per mask, rate 0.5")
    write_table(res, "fig1_masks", rows, scale, "Mask moments: sampled vs exact (rate 0.5)")


def render_fig2_mlp_curves(res: Path, scale: str) -> None:
    runs = {r["run"] for r in main_runs(read_runs(res), "mlp_mnist")}
    curves = [c for c in read_csv(res / "curves.csv") if c["run"] in runs and c.get("test_error", "") != ""]
    if not curves:
        return write_missing(res, "fig2_mlp_curves", scale, "mlp_mnist")
    fig, ax = plt.subplots(figsize=(COLUMN_W, 2.4))
    rows = []
    for reg, rr in sorted(group(curves, lambda c: c["regulariser"]).items(), key=lambda kv: ordered([kv[0]])):
        rows += [{"regulariser": reg, "epoch": e, **s} for e, s in _curve_panel(ax, rr, reg, "test_error")]
    ax.set_xlabel("epoch")
    ax.set_ylabel("test error (%)")
    plain_log_axis(ax)
    ax.legend(frameon=False)
    save(fig, res, "fig2_mlp_curves", scale, f"mean and 95% CI over seeds; {SHORT_RULE}")
    write_table(res, "fig2_mlp_curves", rows, scale, "MLP on MNIST: test error (%) by epoch")


def render_fig3_mlp_rates(res: Path, scale: str) -> None:
    grid = recipes.rate_grid("fig3_mlp_rates", "mlp_mnist")
    runs = [r for r in read_runs(res) if r["experiment"] == "mlp_mnist" and r["status"] == "completed"
            and r["regulariser"] in ("dropout", "qsd") and is_default_qsd(r) and on_grid(r, grid)]
    if not runs:
        return write_missing(res, "fig3_mlp_rates", scale, "mlp_mnist rate sweep")
    fig, ax = plt.subplots(figsize=(COLUMN_W, 2.4))
    rows = []
    for reg in ordered({r["regulariser"] for r in runs}):
        rates = sorted({r["rate_hidden"] for r in runs if r["regulariser"] == reg})
        stats = [mean_ci([r["test_metric"] for r in runs if r["regulariser"] == reg and r["rate_hidden"] == x]) for x in rates]
        m = np.array([s["mean"] for s in stats])
        err = np.array([[s["mean"] - s["lo"], s["hi"] - s["mean"]] for s in stats]).T
        ax.errorbar(rates, m, yerr=None if np.isnan(err).all() else err, color=COLOURS[reg], label=LABELS[reg],
                    marker="o", ms=3, capsize=3)
        rows += [{"regulariser": reg, "rate_hidden": x, **s} for x, s in zip(rates, stats)]
    ax.set_xlabel("hidden-layer rate r (input rate 0.2)")
    ax.set_ylabel("final test error (%)")
    ax.legend(frameon=False)
    save(fig, res, "fig3_mlp_rates", scale, f"mean and 95% CI over seeds; {SHORT_RULE}")
    write_table(res, "fig3_mlp_rates", rows, scale, "MLP on MNIST: final test error (%) by hidden rate")


SPARSITY = [("zero_frac_example", "fraction of zero units"), ("hoyer", "Hoyer sparsity"), ("dead_frac", "dead units (fraction)")]


def _dead_units(rows: list[dict]) -> dict:
    """One layer's dead units under one regulariser: dead units / (units x seeds), the seeds' units pooled,
    with a 95% Wilson score interval on that count. A dead fraction is a count of units, often 0, so a t interval
    over a few seeds' fractions crosses zero, and collapses to a point when no seed has a dead unit; the Wilson
    interval stays in [0, 1] and still bounds what 0 dead units out of that many allows (close to 95% coverage, where
    Clopper-Pearson's is wider than it needs to be). Pooling treats units as independent across seeds, so it leaves
    out between-seed spread (``sd`` gives it); a layer has the same units in every seed, so ``mean`` is the seeds'."""
    dead = sum(round(r["dead_frac"] * r["units"]) for r in rows)
    units = sum(r["units"] for r in rows)
    p = proportion_ci(dead, units)
    return {**mean_ci([r["dead_frac"] for r in rows]), "mean": p["p"], "lo": p["lo"], "hi": p["hi"],
            "interval": f"Wilson: {dead} of {units} units, seeds pooled"}


def _sparsity_stats(rows: list[dict], key: str) -> dict:
    """Mean and 95% interval of measure ``key`` over one layer's and regulariser's runs: a t interval over seeds,
    but for dead units (``_dead_units``) a Wilson interval on the pooled count; ``interval`` names which."""
    return _dead_units(rows) if key == "dead_frac" else {**mean_ci([r[key] for r in rows]), "interval": "t over seeds"}


def render_fig4_sparsity(res: Path, scale: str) -> None:
    all_runs, curves, longer = read_collected(res)
    runs = {r["run"] for r in main_runs(all_runs, "mlp_mnist")}
    sparsity = read_csv(res / "sparsity.csv")
    sp = [s for s in sparsity if s["run"] in runs]
    if not sp:
        return write_missing(res, "fig4_sparsity", scale, "mlp_mnist")
    layers = sorted({s["layer"] for s in sp}, key=lambda x: (len(str(x)), str(x)))
    regs = ordered({s["regulariser"] for s in sp})
    fig, axes = plt.subplots(1, len(SPARSITY), figsize=(2 * COLUMN_W, 2.2))
    rows = []
    width = 0.8 / len(regs)
    for ax, (key, label) in zip(axes, SPARSITY):
        for j, reg in enumerate(regs):
            stats = [_sparsity_stats([s for s in sp if s["regulariser"] == reg and s["layer"] == l], key) for l in layers]
            x = np.arange(len(layers)) + (j - (len(regs) - 1) / 2) * width
            err = np.array([[s["mean"] - s["lo"], s["hi"] - s["mean"]] for s in stats]).T
            ax.bar(x, [s["mean"] for s in stats], width, yerr=None if np.isnan(err).all() else err,
                   color=COLOURS[reg], label=LABELS[reg], capsize=2)
            rows += [{"measure": key, "layer": f"hidden {i + 1}", "regulariser": reg, **s} for i, s in enumerate(stats)]
        ax.set_xticks(range(len(layers)), [f"hidden {i + 1}" for i in range(len(layers))])
        ax.set_ylabel(label)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncol=len(regs), frameon=False)
    save(fig, res, "fig4_sparsity", scale, "test set, masks off; mean and 95% CI: t over seeds, but for dead units "
         f"Wilson on the units of all seeds pooled; {SHORT_RULE}")
    write_table(res, "fig4_sparsity", rows, scale, "Test-time sparsity of hidden ReLU layers (MLP, MNIST)")
    recipe = recipe_comparison(all_runs, curves, longer, "mlp_mnist", recipes.SEEDS[scale])
    d_arm, none = recipe["arms"].get("dropout", Arm()), recipe["arms"].get("none")
    compared = [("(a) recipe rate", sp, recipe["arms"].get("qsd", Arm()))]
    for mapping, what in MATCHED.items():  # QSD at dropout's zero fraction or variance (table3 c), same dropout runs
        matched = matched_runs(all_runs, "mlp_mnist", mapping)
        names = {r["run"] for r in matched if r["status"] == "completed"}
        compared.append((f"(c) QSD at {what} ({mapping} mapping)", [s for s in sparsity if s["run"] in names],
                         arm(matched, curves, longer)))
    diffs = []
    for comparison, qsd_rows, q_arm in compared:  # the test error's gate, inputs and verdict decide each comparison's
        judged = compare(d_arm, q_arm, recipes.SEEDS[scale], none)["verdict"]
        withheld = judged if judged.startswith(WITHHELD) else None
        for key, _ in SPARSITY:
            for i, l in enumerate(layers):
                dropout = by_reg([s for s in sp if s["layer"] == l and s["regulariser"] == "dropout"], key)
                qsd = by_reg([s for s in qsd_rows if s["layer"] == l and s["regulariser"] == "qsd"], key)
                if "dropout" in dropout and "qsd" in qsd:
                    d = paired_difference(dropout["dropout"], qsd["qsd"])
                    diffs.append({"comparison": comparison, "measure": key, "layer": f"hidden {i + 1}",
                                  "qsd_minus_dropout": d["diff"], "boot_lo": d["lo"], "boot_hi": d["hi"],
                                  "t_lo": d["t_lo"], "t_hi": d["t_hi"], "n_pairs": d["n_pairs"],
                                  "verdict": withheld or verdict(d, lower_is_better=False)
                                  .replace("better", "sparser").replace("worse", "less sparse")})
    write_table(res, "fig4_sparsity_diff", diffs, scale,
                f"Sparsity: paired QSD - dropout differences, (a) at the recipe's rates, (c) with QSD at dropout's "
                f"P(m=0) or Var(m) at the same rates ({SHORT_RULE})")


def render_fig5_weights(res: Path, scale: str) -> None:
    chosen = [r for r in main_runs(read_runs(res), "mlp_mnist") if r["regulariser"] in ("dropout", "qsd")]
    runs = {r["run"] for r in chosen}
    w = [x for x in read_csv(res / "weights.csv") if x["run"] in runs]
    ks = [k for k in read_csv(res / "weights_ks.csv") if k["experiment"] == "mlp_mnist"
          and all(k.get(a) == b for a, b in recipes.recipe_rates("mlp_mnist").items())]
    commit = {r["run"]: r["commit"] for r in chosen}
    retrained = sorted({k["weights_commit"] for k in ks if k.get("weights_commit") and k["weights_commit"] != pair_commit(
        commit.get(k["run_dropout"], ""), commit.get(k["run_qsd"], ""))})
    ks_note = (f"; KS from the weights of the same configs retrained at commit {', '.join(retrained)} (the committed "
               "runs' weights stayed on the machine that trained them)") if retrained else ""
    if not w:
        return write_missing(res, "fig5_weights", scale, "mlp_mnist dropout + qsd")
    layers = sorted({x["layer"] for x in w}, key=lambda x: (len(str(x)), str(x)))
    fig, axes = plt.subplots(2, len(layers), figsize=(2 * COLUMN_W, 3.2), squeeze=False)
    rows = []
    for col, layer in enumerate(layers):
        for row, kind in enumerate(("weight", "bias")):
            ax = axes[row, col]
            param = f"{layer}.{kind}"
            for reg in ("dropout", "qsd"):
                sel = [x for x in w if x["layer"] == layer and x["kind"] == kind and x["regulariser"] == reg]
                if not sel:
                    continue
                for x in sel:  # one outline per seed
                    edges, counts = np.array(json.loads(x["hist_edges"])), np.array(json.loads(x["hist_counts"]))
                    ax.stairs(counts / counts.sum() / np.diff(edges), edges, color=COLOURS[reg], alpha=0.6,
                              label=LABELS[reg] if x is sel[0] else None)
                rows.append({"layer": layer, "kind": kind, "regulariser": reg,
                             "mean": mean_ci([x["mean"] for x in sel])["mean"], "sd": mean_ci([x["sd"] for x in sel])["mean"],
                             "n_seeds": len(sel)})
            kss = [k["ks"] for k in ks if k["param"] == param]
            title = f"layer {col + 1} {'weights' if kind == 'weight' else 'biases'}" + (f", KS {np.mean(kss):.3f}" if kss else "")
            ax.set_title(title, fontsize=6)
            ax.locator_params(axis="x", nbins=4)
            if col == 0:
                ax.set_ylabel("density")
            if row == 1:
                ax.set_xlabel("value")
            for r in rows[-2:]:
                if r["layer"] == layer and r["kind"] == kind:
                    r["ks_mean_over_seeds"] = float(np.mean(kss)) if kss else math.nan
    axes[0, 0].legend(frameon=False, fontsize=6)
    save(fig, res, "fig5_weights", scale, "KS: two-sample statistic dropout vs QSD, mean over seeds" + ks_note)
    write_table(res, "fig5_weights", rows, scale, "Trained weights and biases: mean, sd (averaged over seeds) and KS"
                + ks_note)


CNN_EXPERIMENTS = [("cnn_mnist", "MNIST, plain"), ("cnn_fashion", "Fashion, plain"),
                   ("cnn_fashion_extra", "Fashion, +BN+WD+aug"), ("wrn_cifar10", "CIFAR-10, WRN")]


def _panels_by_experiment(res, scale, stem, experiments, value, ylabel, title, transform=lambda v: v):
    runs = read_runs(res)
    present = [(e, lab) for e, lab in experiments if main_runs(runs, e)]
    if not present:
        return write_table(res, stem, [{"experiment": e, "status": absent_reason(e, scale)} for e, _ in experiments],
                           scale, stem)
    absent = "; ".join(f"{lab}: {absent_reason(e, scale)}" for e, lab in experiments if (e, lab) not in present)
    fig, axes = plt.subplots(1, len(present), figsize=(max(COLUMN_W, PANEL_W * len(present)), 2.3), squeeze=False)
    rows = []
    for ax, (e, lab) in zip(axes[0], present):
        vals = {reg: {s: transform(v) for s, v in d.items()} for reg, d in by_reg(main_runs(runs, e), value).items()}
        lost = group([r for r in recipe_runs(runs, e) if r["status"] != "completed"], lambda r: r["regulariser"])
        rows += [{"experiment": e, **r, "lost_seeds": len(lost.get(r["regulariser"], []))}
                 for r in _estimate_panel(ax, vals, ylabel if ax is axes[0][0] else "")]
        ax.set_title(lab)
    save(fig, res, stem, scale, f"{ESTIMATE_KEY}; {SHORT_RULE}" + (f" | {absent}" if absent else ""))
    write_table(res, stem, rows, scale, title + (f". {absent}" if absent else ""))


def render_fig6_cnn(res: Path, scale: str) -> None:
    _panels_by_experiment(res, scale, "fig6_cnn", CNN_EXPERIMENTS, "test_metric", "test error (%)", "CNN test error (%)")


def render_fig7_lstm_lm(res: Path, scale: str) -> None:
    runs = main_runs(read_runs(res), "lstm_ptb")
    if not runs:
        return write_table(res, "fig7_lstm_lm", [{"status": absent_reason("lstm_ptb", scale)}], scale, "fig7_lstm_lm")
    ids = {r["run"] for r in runs}
    curves = [c for c in read_csv(res / "curves.csv") if c["run"] in ids]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(2 * COLUMN_W, 2.3))
    rows = []
    for reg, rr in group(curves, lambda c: c["regulariser"]).items():
        rows += [{"regulariser": reg, "epoch": e, **{f"valid_ppl_{k}": v for k, v in s.items()}}
                 for e, s in _curve_panel(ax1, rr, reg, "valid_ppl")]
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("validation perplexity")
    plain_log_axis(ax1)
    ax1.legend(frameon=False)
    test_rows = _estimate_panel(ax2, by_reg(runs, "test_metric"), "test perplexity")
    save(fig, res, "fig7_lstm_lm", scale, f"curves: seed mean and 95% band; {ESTIMATE_KEY}; {SHORT_RULE}")
    lost = group([r for r in recipe_runs(read_runs(res), "lstm_ptb") if r["status"] != "completed"],
                 lambda r: r["regulariser"])
    write_table(res, "fig7_lstm_lm", [{"regulariser": r["regulariser"], "test_ppl_mean": r["mean"], "lo": r["lo"],
                                       "hi": r["hi"], "n": r["n"], "lost_seeds": len(lost.get(r["regulariser"], []))}
                                      for r in test_rows], scale, "LSTM LM on PTB: test perplexity")
    write_table(res, "fig7_lstm_lm_curves", rows, scale, "LSTM LM on PTB: validation perplexity by epoch")


def render_fig8_sentiment(res: Path, scale: str) -> None:
    _panels_by_experiment(res, scale, "fig8_sentiment", [("lstm_imdb", "IMDB"), ("lstm_rt", "Rotten Tomatoes")],
                          "test_metric", "test accuracy (%)", "LSTM sentiment: test accuracy (%)", lambda v: 100.0 - v)


def render_fig9_sensitivity(res: Path, scale: str) -> None:
    runs = [r for r in read_runs(res) if r["experiment"] == "mlp_sensitivity" and r["status"] == "completed"]
    if not runs:
        return write_missing(res, "fig9_sensitivity", scale, "mlp_sensitivity")
    sp = group([s for s in read_csv(res / "sparsity.csv") if s["experiment"] == "mlp_sensitivity"], lambda s: s["run"])
    for r in runs:
        layers = sp.get(r["run"], [])
        r["sparsity"] = float(np.mean([s["zero_frac_example"] for s in layers])) if layers else math.nan
    drop = [r for r in runs if r["regulariser"] == "dropout"]
    qsd = [r for r in runs if r["regulariser"] == "qsd"]
    variants = group(qsd, lambda r: (r["n"], r["cv"], r["alpha"], r["mapping"]))
    def summary(rr: list[dict]) -> dict:
        return {"valid_error_mean": mean_ci([r.get("valid_error", math.nan) for r in rr])["mean"],
                **{f"error_{k}": v for k, v in mean_ci([r["test_metric"] for r in rr]).items()},
                "sparsity_mean": mean_ci([r["sparsity"] for r in rr])["mean"]}

    rows = [{"regulariser": "dropout", "n": "", "cv": "", "alpha": "", "mapping": "", **summary(drop)}]
    for (n, cv, alpha, mapping), rr in sorted(variants.items(), key=lambda kv: tuple(map(str, kv[0]))):
        rows.append({"regulariser": "qsd", "n": n, "cv": cv, "alpha": alpha, "mapping": mapping, **summary(rr)})
    chosen = min((r for r in rows if r["regulariser"] == "qsd"), key=lambda r: r["valid_error_mean"], default=None)
    for r in rows:  # a setting is chosen on validation, never on test
        r["best_on_validation"] = r is chosen
    fig, axes = plt.subplots(1, 3, figsize=(2 * COLUMN_W, 2.3))
    grid = [r for r in rows if r["regulariser"] == "qsd" and r["alpha"] == 1.0 and r["mapping"] == "mean"]
    ns, cvs = sorted({r["n"] for r in grid}), sorted({r["cv"] for r in grid})
    for ax, key, label in ((axes[0], "error_mean", "test error (%)"), (axes[1], "sparsity_mean", "fraction of zero units")):
        if ns and cvs:
            img = np.full((len(cvs), len(ns)), np.nan)
            for r in grid:
                img[cvs.index(r["cv"]), ns.index(r["n"])] = r[key]
            im = ax.imshow(img, origin="lower", aspect="auto", cmap="viridis")
            ax.set_xticks(range(len(ns)), ns)
            ax.set_yticks(range(len(cvs)), cvs)
            ax.set_xlabel("release sites n")
            ax.set_ylabel("quantal CV")
            plt.colorbar(im, ax=ax, label=label)
            mid = np.nanmean(img)
            for (i, j), v in np.ndenumerate(img):
                if v == v:
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=5, color="k" if v > mid else "w")
    ax = axes[2]
    others = sorted((r for r in rows if r["regulariser"] == "qsd" and (r["alpha"] != 1.0 or r["mapping"] != "mean")),
                    key=lambda r: (r["mapping"] != "mean", float(r["alpha"]), r["n"]))
    labels = [f"\u03b1={r['alpha']}" if r["mapping"] == "mean" else f"failure, n={r['n']}" for r in others]
    ax.errorbar(range(len(others)), [r["error_mean"] for r in others],
                yerr=np.nan_to_num(np.array([[r["error_mean"] - r["error_lo"], r["error_hi"] - r["error_mean"]] for r in others]).T)
                if others else None, fmt="o", color=COLOURS["qsd"], ms=3, capsize=2, label="QSD")
    if drop:
        ax.axhline(rows[0]["error_mean"], color=COLOURS["dropout"], label="dropout")
    ax.set_xticks(range(len(others)), labels, rotation=45)
    ax.set_ylabel("test error (%)")
    ax.legend(frameon=False)
    save(fig, res, "fig9_sensitivity", scale, "n x CV at alpha=1, mapping=mean; right: other alpha and the failure mapping")
    write_table(res, "fig9_sensitivity", rows, scale, "QSD sensitivity (MLP, MNIST): validation and test error (%) and "
                "mean zero fraction; the best setting is the one with the lowest validation error")



RENDERERS = {name[len("render_"):]: fn for name, fn in globals().items() if name.startswith("render_")}
