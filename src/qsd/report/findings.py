"""Where a reader finds the findings: ``results/<scale>/REPORT.md`` (per claim of the abstract: the
verdict, the numbers with their intervals, the gate's findings, the fresh seeds' outcome, the figure and
its data), ``results/cpu-vs-paper.md`` (each comparison at both scales) and the README's verdict table
(its blocks between ``markers(name)``).

Everything here is read from the tables beside it (table1, table3, fig4-fig9, anchors, cost, compute,
replication) and only rounded or summarised (claim 3's sd ratios); no statistic is estimated anew, so a
report cannot disagree with its tables, and re-rendering the committed tables gives the committed report
byte for byte (a test checks it).
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..io import write_text
from . import recipes
from .replication import word
from .tables import read_csv

RECIPE = "(a) recipe rate"
TUNED = "(b) each at its validation-best rate"
MATCHED = {"failure": "(c) recipe rate, QSD at equal P(m=0) (failure mapping)",
           "variance": "(c) recipe rate, QSD at equal Var(m) (variance mapping)"}
SCALES = ("cpu", "paper")  # the scales the README and the comparison show
README_BLOCKS = ("time", "findings")  # the README's rendered blocks, between ``markers(name)``
SCALE_NOTES = {
    "smoke": "**SMOKE scale: a pipeline check on tiny subsets; these numbers mean nothing.**",
    "cpu": "The cpu scale: real data, smaller models and data sets sized so that their baselines can converge "
           "on 2 CPU cores (the gate checks that they did), not the paper's protocols "
           "([docs/scales.md](../../docs/scales.md)). A claim that fails here may hold at paper scale, and the "
           "reverse.",
    "paper": "The paper scale: the full protocols (standard recipes; the paper's own are not public), 5 seeds, "
             "trained in slices on lent GPUs and, for the sentiment LSTMs, the MLP's gate runs for QSD and part of "
             "the replication, on a 2-core CPU "
             "([provenance.md](provenance.md)). Comparisons whose runs are not all made yet read `not run yet` "
             "or `incomplete`.",
}


@dataclass(frozen=True)
class Comparison:
    """One QSD-vs-dropout comparison: a row of table1 (the recipe's rates) or a pair of rows of table3."""

    name: str  # as the README names it
    table: str  # table1_summary or table3_tuned
    experiment: str  # the row label both tables use
    comparison: str = RECIPE  # table3's comparison column (table1's rows are (a))


@dataclass(frozen=True)
class Claim:
    """A claim of the paper's abstract, the comparisons and figures that test it."""

    key: str
    text: str
    figures: tuple[str, ...]
    comparisons: tuple[Comparison, ...] = ()


MLP, CNN_M, CNN_F, CNN_X, WRN = ("MLP / MNIST (error %)", "CNN / MNIST (error %)", "CNN / Fashion-MNIST (error %)",
                                 "CNN+BN+WD+aug / Fashion-MNIST (error %)", "WRN / CIFAR-10 (error %)")
PTB, IMDB, RT = "LSTM LM / PTB (test perplexity)", "LSTM / IMDB (error %)", "LSTM / Rotten Tomatoes (error %)"
CLAIMS = (
    Claim("1", "QSD beats dropout in ReLU MLPs", ("fig2_mlp_curves", "fig3_mlp_rates"),
          (Comparison("MLP, tuned", "table3_tuned", MLP, TUNED), Comparison("MLP, recipe rate", "table1_summary", MLP))),
    Claim("2", "QSD-trained MLPs encode more sparsely", ("fig4_sparsity",)),
    Claim("3", "QSD leaves weight and bias distributions unshifted", ("fig5_weights",)),
    Claim("4", "QSD improves CNNs, with and without other regularisers", ("fig6_cnn",),
          (Comparison("Fashion-MNIST CNN, tuned", "table3_tuned", CNN_F, TUNED),
           Comparison("MNIST CNN, recipe rates", "table1_summary", CNN_M),
           Comparison("Fashion-MNIST CNN, recipe rates", "table1_summary", CNN_F),
           Comparison("CNN +BN+WD+aug, recipe rates", "table1_summary", CNN_X),
           Comparison("WRN / CIFAR-10, recipe rates", "table1_summary", WRN))),
    Claim("5a", "QSD improves LSTM language models", ("fig7_lstm_lm",),
          (Comparison("PTB medium LSTM, recipe rates", "table1_summary", PTB),)),
    Claim("5b", "QSD improves LSTM sentiment analysis", ("fig8_sentiment",),
          (Comparison("Rotten Tomatoes, tuned", "table3_tuned", RT, TUNED),
           Comparison("IMDB, tuned", "table3_tuned", IMDB, TUNED),
           Comparison("Rotten Tomatoes, recipe rate", "table1_summary", RT),
           Comparison("IMDB, recipe rate", "table1_summary", IMDB))),
    Claim("6", "QSD drops in wherever dropout does", ()),
)
BEYOND = tuple(Comparison(f"{short}, QSD at dropout's {what}", "table3_tuned", e, MATCHED[mapping])
               for short, e in (("MLP", MLP), ("Fashion-MNIST CNN", CNN_F))
               for mapping, what in (("failure", "P(m=0)"), ("variance", "Var(m)")))
DROP_IN = ("holds by construction: one `qsd.regularisers.build(\"qsd\", ...)` module serves the MLP, CNNs, WRN and "
           "both LSTMs unchanged (`tests/test_train.py::test_every_experiment_runs_a_smoke_step`)")


# --- reading the tables' cells ---------------------------------------------------------------------------

def _floats(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?|nan", str(text))]


def _signed(x: float) -> str:
    return f"{x:+.2f}"


def _arm(cell: str) -> str:
    """'2.852 ± 0.1031 (n=5)' -> '2.85 ± 0.10', lost seeds kept ('(n=4; 1 diverged)'); '' stays ''."""
    m = re.fullmatch(r"(\S+) ± (\S+) \(n=(\d+)(.*)\)", str(cell))
    if not m:
        return str(cell)
    mean, sd, n, lost = m.groups()
    number = lambda x: f"{float(x):.2f}" if x not in ("n/a", "nan") else "n/a"
    return f"{number(mean)}{' ± ' + number(sd) if number(sd) != 'n/a' else ''} (n={n}{lost})"


@dataclass
class Result:
    """A comparison as its table gives it: the arms' cells, the picks, the estimate and the verdict."""

    verdict: str
    none: str = ""
    dropout: str = ""
    qsd: str = ""
    picks: tuple[str, str] = ("", "")
    estimate: str = ""  # 'QSD - dropout' cell, e.g. '0.102 (5 pairs)'
    interval: str = ""  # paired t 95% CI cell, e.g. '[-0.07259, 0.2766]'
    gains: tuple[str, str] = ("", "")  # dropout's and QSD's further gain (the gate's convergence test)

    def difference(self) -> str:
        """'+0.10 [-0.07, +0.28]' (paired QSD - dropout, 95% t interval), or '' where there is none."""
        est, ci = _floats(self.estimate)[:1], _floats(self.interval)
        if not est or len(ci) != 2 or any(x != x for x in (*est, *ci)):
            return ""
        return f"{_signed(est[0])} [{_signed(ci[0])}, {_signed(ci[1])}]"

    def short(self) -> str:
        """The verdict in a few words: the word and the difference, or why there is none."""
        if word(self.verdict):
            return ", ".join(filter(None, (self.verdict, self.difference())))
        if self.verdict.startswith("not comparable: "):  # each reason without its numbers
            reasons = self.verdict[len("not comparable: "):].split("; ")
            return "withheld: " + "; ".join(re.sub(r" on validation \(\S+ vs \S+\)", "", r.split(" (validation")[0])
                                            for r in reasons)
        if self.verdict.startswith("incomplete: "):
            return "incomplete: " + ", ".join(_missing(part) for part in
                                              self.verdict[len("incomplete: "):].split(" (so far")[0].split("; "))
        if self.verdict.startswith("not run yet"):
            return "not run yet"
        return self.verdict.split(":")[0]  # 'not testable at cpu scale'


def _missing(part: str) -> str:
    """One missing input of an 'incomplete' verdict in a few words: "QSD's 1.5x-epoch runs missing for
    seed(s) 0, 1" -> "QSD's 1.5x-epoch runs"; "3 of 5 seeds finished" stays."""
    return re.sub(r" missing for seed\(s\) [\d, ]+$", " missing", part)


def _gains(row: dict) -> tuple[str, str]:
    """Each arm's further gain, as table1 and table3 give it."""
    return str(row.get("dropout's further gain", "")), str(row.get("QSD's further gain", ""))


class Tables:
    """The tables of one scale's results folder, read once."""

    def __init__(self, res: Path, scale: str):
        self.res, self.scale = res, scale
        self.rows = {t: read_csv(res / f"{t}.csv") for t in ("table1_summary", "table3_tuned")}
        self.fresh = {(r["experiment"], r["comparison"]): r for r in read_csv(res / "replication" / "replication.csv")}

    def result(self, c: Comparison) -> Result | None:
        """The comparison's row(s), or None where its table has none (e.g. not collected at this scale)."""
        table1 = {r["experiment"]: r for r in self.rows["table1_summary"]}
        none = _arm(table1.get(c.experiment, {}).get("none", ""))
        if c.table == "table1_summary":
            r = table1.get(c.experiment)
            return r and Result(str(r["verdict"]), none, _arm(r.get("dropout", "")), _arm(r.get("qsd", "")),
                                estimate=str(r.get("QSD - dropout", "")), interval=str(r.get("paired t 95% CI", "")),
                                gains=_gains(r))
        rows = [r for r in self.rows[c.table] if r["experiment"] == c.experiment and r["comparison"] == c.comparison]
        by_reg = {r.get("regulariser", ""): r for r in rows}
        if not rows:
            return None
        if "qsd" not in by_reg:
            return Result(str(rows[0]["verdict"]), none)
        d, q = by_reg.get("dropout", {}), by_reg["qsd"]
        picks = tuple("" if r.get("best_rate", "recipe") == "recipe" else str(r["best_rate"]) for r in (d, q))
        return Result(str(q["verdict"]), none, _arm(d.get("test", "")), _arm(q["test"]), picks,
                      str(q.get("QSD - dropout", "")), str(q.get("paired t 95% CI", "")), _gains(q))

    def replication(self, c: Comparison) -> str:
        """The fresh seeds' outcome for this comparison ('replicates', 'does not replicate', 'not tested
        (...)'), with their difference where they gave one; '' where no replication was collected."""
        r = self.fresh.get((c.experiment, c.comparison))
        if not r:
            return ""
        fresh = Result(str(r["fresh seeds: verdict"]), estimate=r["fresh seeds: QSD - dropout [95% CI]"].split(" [")[0],
                       interval="[" + r["fresh seeds: QSD - dropout [95% CI]"].split(" [", 1)[-1])
        inside = r.get("fresh estimate in the main's 95% prediction interval", "")
        return r["outcome"] + (f" ({fresh.short()})" if word(fresh.verdict) else "") + \
            (f"; fresh estimate {inside.split(' [')[0]} the main's 95% prediction interval" if inside else "")


# --- claims 2 and 3, read from fig4's and fig5's tables ----------------------------------------------------

def sparsity_rows(res: Path) -> list[dict]:
    """fig4_sparsity_diff's rows, each with its difference formatted."""
    return [{**r, "difference": f"{r['qsd_minus_dropout']:+.3f} [{r['t_lo']:+.3f}, {r['t_hi']:+.3f}]"}
            for r in read_csv(res / "fig4_sparsity_diff.csv") if "qsd_minus_dropout" in r]


def sparsity_short(res: Path) -> str:
    """Claim 2 in a few words: the zero fraction of hidden units at the recipe's rates, per layer."""
    rows = [r for r in sparsity_rows(res) if r["comparison"] == RECIPE and r["measure"] == "zero_frac_example"]
    if not rows:
        return "not run yet"
    verdicts = {str(r["verdict"]) for r in rows}
    if len(verdicts) > 1:
        return "; ".join(f"{r['layer']}: {r['verdict']}, {r['difference']}" for r in rows)
    only = next(iter(verdicts))
    given = "; ".join(f"{r['layer']} {r['difference']}" for r in rows)
    return f"{only}: {given}" if word(only) or only.startswith("QSD ") else Result(only).short()


def weight_rows(res: Path) -> list[dict]:
    """fig5_weights's rows paired by layer and kind: dropout's and QSD's mean and sd, and the KS statistic."""
    rows = read_csv(res / "fig5_weights.csv")
    pairs = {}
    for r in rows:
        if "regulariser" in r:
            pairs.setdefault((r["layer"], r["kind"]), {})[r["regulariser"]] = r
    layers = list(dict.fromkeys(layer for layer, _ in pairs))
    return [{"layer": layer, "number": f"layer {layers.index(layer) + 1}", "kind": kind, "dropout": p["dropout"],
             "qsd": p["qsd"], "ks": p["qsd"].get("ks_mean_over_seeds", "")}
            for (layer, kind), p in pairs.items() if len(p) == 2]


def weights_short(res: Path) -> str:
    """Claim 3 in a few words: how far apart the weight means are, QSD's weight sd against dropout's."""
    rows = weight_rows(res)
    if not rows:
        return "not run yet"
    parts = []
    for kind in ("weight", "bias"):
        rr = [r for r in rows if r["kind"] == kind]
        gap = max(abs(r["qsd"]["mean"] - r["dropout"]["mean"]) for r in rr)
        ratios = sorted(r["qsd"]["sd"] / r["dropout"]["sd"] for r in rr)
        parts.append(f"{kind.replace('bias', 'biase')}s: means within {gap:.3f}, QSD's sd "
                     f"{ratios[0]:.2f}-{ratios[-1]:.2f}x dropout's")
    return "descriptive, no test (over the layers): " + "; ".join(parts)


# --- rendering --------------------------------------------------------------------------------------------

def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    cell = lambda x: str(x).replace("|", "\\|").replace("\n", " ")
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(cell(x) for x in row) + " |" for row in rows)]


def _figure(res: Path, stem: str) -> list[str]:
    """The figure embedded, or why it is not drawn (its table's status)."""
    if (res / f"{stem}.png").exists():
        return [f"![{stem}]({stem}.png)", ""]
    return [f"*{stem} is not drawn: no runs of it are collected at this scale.*", ""]


def _data_links(res: Path, stems: list[str]) -> str:
    return "Data: " + " · ".join(f"[{s}.csv]({s}.csv)" for s in dict.fromkeys(stems) if (res / f"{s}.csv").exists())


def _comparison_table(tables: Tables, comparisons: tuple[Comparison, ...]) -> list[str]:
    rows, picks = [], []
    for c in comparisons:
        r = tables.result(c)
        if r is None:
            continue
        rows.append([c.name, r.none, r.dropout, r.qsd, r.difference(), " / ".join(g or "n/a" for g in r.gains),
                     r.verdict, tables.replication(c)])
        if any(r.picks):
            picks.append(f"{c.name}: dropout {r.picks[0]}; QSD {r.picks[1]}")
    if not rows:
        return ["No comparison collected at this scale.", ""]
    out = _table(["comparison", "none", "dropout", "QSD", "QSD - dropout [95% CI]",
                  "further gain with 1.5x the epochs: dropout / QSD", "verdict", "fresh seeds"], rows) + [""]
    if picks:
        out += ["Rates picked on validation, by seed: " + " | ".join(picks) + ".", ""]
    return out


def _claim_section(tables: Tables, claim: Claim) -> list[str]:
    res = tables.res
    out = [f"## Claim {claim.key}. {claim.text}", ""]
    if claim.key == "2":
        out += _table(["comparison", "measure", "layer", "QSD - dropout [95% CI]", "verdict"],
                      [[r["comparison"], r["measure"], r["layer"], r["difference"], r["verdict"]]
                       for r in sparsity_rows(res)]) + [""]
    elif claim.key == "3":
        out += [weights_short(res) + ".", ""]
        out += _table(["layer", "kind", "dropout mean (sd)", "QSD mean (sd)", "KS (mean over seeds)"],
                      [[f"{r['layer']} ({r['number']})", r["kind"], f"{r['dropout']['mean']:+.4f} ({r['dropout']['sd']:.4f})",
                        f"{r['qsd']['mean']:+.4f} ({r['qsd']['sd']:.4f})", f"{r['ks']:.3f}" if r["ks"] != "" else ""]
                       for r in weight_rows(res)]) + [""]
    elif claim.key == "6":
        out += [DROP_IN[0].upper() + DROP_IN[1:] + ".", ""]
    else:
        out += _comparison_table(tables, claim.comparisons)
    for stem in claim.figures:
        out += _figure(res, stem)
    tables_read = [c.table for c in claim.comparisons] + [s for s in claim.figures] + \
                  (["fig4_sparsity_diff"] if claim.key == "2" else [])
    if tables_read:
        out += [_data_links(res, tables_read), ""]
    return out


def _sensitivity(res: Path) -> list[str]:
    rows = read_csv(res / "fig9_sensitivity.csv")
    if not rows or "error_mean" not in rows[0]:
        return _figure(res, "fig9_sensitivity")
    body = [[r["regulariser"] if r["regulariser"] == "dropout" else
             f"QSD n={r['n']}, CV={r['cv']}, α={r['alpha']}, {r['mapping']}",
             f"{r['valid_error_mean']:.2f}", f"{r['error_mean']:.2f} [{r['error_lo']:.2f}, {r['error_hi']:.2f}]",
             f"{r['sparsity_mean']:.3f}", "yes" if r["best_on_validation"] is True or r["best_on_validation"] == "True"
             else ""] for r in rows]
    return ["Exploratory (3 seeds, the recipe's rates, no gate): QSD's own settings against dropout.", "",
            *_table(["setting", "validation error (%)", "test error (%) [95% CI]", "zero fraction",
                     "QSD setting picked on validation"], body), "", *_figure(res, "fig9_sensitivity"),
            _data_links(res, ["fig9_sensitivity"]), ""]


def _cost(res: Path) -> list[str]:
    rows, path = read_csv(res / "table2_cost.csv"), res / "cost.json"
    if not rows or "time_vs_dropout" not in rows[0] or not path.exists():
        return ["Not measured at this scale.", ""]
    cost = json.loads(path.read_text())
    return [f"Measured by `benchmarks/bench_step.py` on {cost['device']}, {cost['threads']} thread(s), median of "
            f"{cost['repeats']} steps ([cost.json](cost.json)); one measurement, on a machine that may have been busy.",
            "", *_table(["model", "regulariser", "step time vs dropout", "saved activations vs dropout"],
                        [[r["model"], r["regulariser"], f"{r['time_vs_dropout']:.2f}x", f"{r['memory_vs_dropout']:.2f}x"]
                         for r in rows]), "", _data_links(res, ["table2_cost"]), ""]


def _anchors(res: Path) -> list[str]:
    rows = [r for r in read_csv(res / "anchors.csv") if "anchor" in r]
    if not rows:
        return ["No published anchor at this scale.", ""]
    fmt = lambda v: f"{v:.1f}" if isinstance(v, float) else str(v)
    return [*_table(["anchor", "published", "measured", "unit", "seeds", "within 3%", "command"],
                    [[r["anchor"], fmt(r["published"]), fmt(r["measured"]), r["unit"], r["seeds"], r["within_3pct"],
                      f"`{r['command']}`"] for r in rows]), "", _data_links(res, ["anchors"]), ""]


def _compute(res: Path) -> list[str]:
    rows = [r for r in read_csv(res / "compute.csv") if "run hours" in r]
    if not rows:
        return ["No run collected.", ""]
    keys = ["figure", "runs", "device", "jobs", "median minutes a run", "run hours", "machine hours"]
    return ["Each run's recorded wall time, by figure (a run several figures use counts in each; the last row "
            "counts it once). Paces per experiment: [compute_pace.md](compute_pace.md).", "",
            *_table(keys, [[r[k] for k in keys] for r in rows]), ""]


def _replication_summary(res: Path) -> list[str]:
    rows = read_csv(res / "replication" / "replication.csv")
    if not rows:
        return ["Not run at this scale.", ""]
    counts = Counter(str(r["outcome"]).split(" (")[0] for r in rows)
    return [f"The same runs on fresh seeds (`make replicate SCALE={{scale}}`), gated on their own, each verdict beside "
            f"the main one by a rule fixed before they trained ([docs/protocols.md](../../docs/protocols.md)): "
            + ", ".join(f"{n} {o}" for o, n in sorted(counts.items())) + ". Every comparison: "
            "[replication/replication.md](replication/replication.md); the per-claim tables above give each outcome "
            "in their last column.", ""]


def render_report(res: Path, scale: str) -> str:
    """``REPORT.md`` of one scale, from the tables in ``res``."""
    tables = Tables(res, scale)
    out = [f"# QSD against dropout: findings at {scale} scale", "",
           SCALE_NOTES.get(scale, ""), "",
           "Rendered by `qsd-reproduce` (`make reproduce-all` / `make figures SCALE=" + scale + "`) from the tables "
           "in this folder; do not edit by hand. A verdict compares QSD with dropout by the paired 95% t interval "
           "over seeds (negative = QSD better) and is given only where the baseline-sanity gate passes; otherwise "
           "the cell says why ([docs/protocols.md](../../docs/protocols.md)). The code that drew this folder: "
           "[drawn_at.md](drawn_at.md).", "",
           "## At a glance", ""]
    glance = [[f"{claim.key}. {claim.text}", *row] for claim in CLAIMS for row in claim_rows(tables, claim)]
    out += _table(["claim", "comparison", "verdict", "fresh seeds"], _blank_repeats(glance)) + [""]
    for claim in CLAIMS:
        out += _claim_section(tables, claim)
    out += ["## Beyond the paper", "", "### QSD at dropout's zero fraction or variance (table3 c)", "",
            *_comparison_table(tables, BEYOND), _data_links(res, ["table3_tuned"]), "",
            "### QSD's own settings (fig9)", "", *_sensitivity(res),
            "### The masks (fig1)", "", *_figure(res, "fig1_masks"), _data_links(res, ["fig1_masks"]), "",
            "### Cost of a training step (table2)", "", *_cost(res),
            "## Published anchors", "", "A recipe named after a paper must reach that paper's number for its baseline.",
            "", *_anchors(res),
            "## Replication on fresh seeds", "", *(line.replace("{scale}", scale) for line in _replication_summary(res)),
            "## Compute", "", *_compute(res)]
    return "\n".join(out).rstrip() + "\n"


def _blank_repeats(rows: list[list[str]]) -> list[list[str]]:
    """The first column shown once per run of equal values."""
    return [[r[0] if i == 0 or r[0] != rows[i - 1][0] else "", *r[1:]] for i, r in enumerate(rows)]


def claim_rows(tables: Tables, claim: Claim) -> list[tuple[str, str, str]]:
    """(comparison, verdict in a few words, fresh seeds' outcome) for each comparison of a claim."""
    if claim.key == "2":
        return [("zero fraction of hidden units, recipe rates", sparsity_short(tables.res), "")]
    if claim.key == "3":
        return [("fig5, recipe rates", weights_short(tables.res), "")]
    if claim.key == "6":
        return [("the MLP, CNNs, WRN and LSTMs", DROP_IN.split(":")[0], "")]
    out = []
    for c in claim.comparisons:
        r = tables.result(c)
        fresh = tables.replication(c)
        out.append((c.name, r.short() if r else "not run yet", fresh if r and word(r.verdict) else ""))
    return out


def render_comparison(results: Path) -> str:
    """``results/cpu-vs-paper.md``: every comparison at both scales, and whether they agree."""
    by_scale = {s: Tables(results / s, s) for s in SCALES}
    rows = []
    for claim in CLAIMS:
        for c in claim.comparisons or ():
            got = {s: t.result(c) for s, t in by_scale.items()}
            rows.append([f"{claim.key}. {c.name}", *(r.short() if r else "not run yet" for r in got.values()),
                         agreement(got["cpu"], got["paper"])])
        if claim.key in ("2", "3"):
            short = sparsity_short if claim.key == "2" else weights_short
            rows.append([f"{claim.key}. {claim.text}", *(short(results / s) for s in SCALES), ""])
    rows += [[f"beyond. {c.name}", *((r := t.result(c)) and r.short() or "not run yet" for t in by_scale.values()),
              agreement(*(t.result(c) for t in by_scale.values()))] for c in BEYOND]
    return "\n".join([
        "# The same comparisons at cpu and paper scale", "",
        "Rendered by `qsd-reproduce` from `results/cpu/` and `results/paper/` (do not edit). Paired QSD - dropout, "
        "95% t interval, negative = QSD better. The scales differ in model size, data and training length, so a "
        "verdict may hold at one and not the other; where they differ, the likely reasons are discussed in "
        "[docs/scales.md](../docs/scales.md). Each scale's report: [cpu](cpu/REPORT.md), [paper](paper/REPORT.md).", "",
        *_table(["comparison", "cpu scale", "paper scale", "agree?"], rows)]) + "\n"


def agreement(a: Result | None, b: Result | None) -> str:
    """Whether two scales' results of one comparison agree: in the verdict's word where both give one, else
    which gives one and whether the estimates point the same way."""
    wa, wb = (word(r.verdict) if r else None for r in (a, b))
    if wa and wb and wa == wb:
        return "yes"
    if not a or not b or not a.difference() or not b.difference():
        missing = "cpu" if not a or not a.difference() else "paper"
        return "no" if wa and wb else f"not compared: {missing} has no estimate"
    signs = {_sign(_floats(r.estimate)[0]) for r in (a, b)}
    sign = "one estimate about 0" if 0 in signs else "the same sign" if len(signs) == 1 else "opposite sign"
    given = "cpu" if wa else "paper" if wb else None
    said = "no" if wa and wb else f"only {given} gives a verdict" if given else "both withheld"
    return f"{said}; estimates of {sign}" if sign != "one estimate about 0" else f"{said}; {sign}"


def _sign(x: float) -> int:
    """-1, 0 or +1, with 0 for an estimate that rounds to 0.00."""
    return 0 if abs(x) < 0.005 else 1 if x > 0 else -1


def markers(name: str) -> tuple[str, str]:
    """The comments around a rendered README block."""
    return f"<!-- rendered:{name} (qsd-reproduce writes this from results/; do not edit) -->", f"<!-- /rendered:{name} -->"


def render_findings_block(results: Path) -> str:
    """The README's verdict table: each claim's comparisons at both scales, in a few words."""
    by_scale = {s: Tables(results / s, s) for s in SCALES}
    rows = []
    for claim in CLAIMS:
        cells = {s: claim_rows(t, claim) for s, t in by_scale.items()}
        for i, (name, *_) in enumerate(cells["cpu"]):
            rows.append([f"{claim.key}. {claim.text}", name, *(_with_fresh(cells[s][i]) for s in SCALES)])
    return "\n".join([
        *_table(["claim", "comparison", "cpu scale", "paper scale"], _blank_repeats(rows)), "",
        "Paired QSD - dropout difference with its 95% t interval: test error in points (perplexity for the LM),",
        "negative = QSD better; for claim 2 the zero fraction of hidden units (negative = QSD less sparse). `withheld`:",
        "the baseline-sanity gate gives no verdict, with its reason; `fresh seeds`: the same runs on seeds 5-9, gated",
        "on their own (`withheld` or `not run` there: the verdict is untested). Numbers, gates and figures:",
        "[results/cpu/REPORT.md](results/cpu/REPORT.md),",
        "[results/paper/REPORT.md](results/paper/REPORT.md); both scales side by side:",
        "[results/cpu-vs-paper.md](results/cpu-vs-paper.md)."])


def render_time_block(results: Path) -> str:
    """What the committed runs of each scale took to train, as their summaries recorded it."""
    lines = []
    for s in SCALES:
        total = next((r for r in read_csv(results / s / "compute.csv") if str(r.get("figure", "")).startswith("all")),
                     None)
        if total:
            lines.append(f"- `{s}`: the {total['runs']} committed runs took {total['run hours']} run-hours as their "
                         f"summaries record it (devices and per figure: [compute.md](results/{s}/compute.md)).")
    return "\n".join(lines)


def _with_fresh(row: tuple[str, str, str]) -> str:
    """A given verdict and what the fresh seeds made of it: '(replicates on fresh seeds)', '(does not
    replicate ...)', '(fresh seeds withheld)' or '(fresh seeds not run)'; a withheld verdict as it is."""
    _, verdict, fresh = row
    outcome = fresh.split(" (")[0]
    if outcome in ("replicates", "does not replicate"):
        return f"{verdict} ({outcome} on fresh seeds)"
    why = re.search(r"fresh seeds (withheld|not run)", fresh)
    return f"{verdict} (fresh seeds {why.group(1)})" if why else verdict


def write_report(res: Path, scale: str) -> None:
    write_text(res / "REPORT.md", render_report(res, scale))


def write_overview(results: Path, readme: Path | None) -> None:
    """``results/cpu-vs-paper.md`` and, where ``readme`` is given, its rendered blocks (``README_BLOCKS``)."""
    write_text(results / "cpu-vs-paper.md", render_comparison(results))
    if readme is not None:
        text = fill_readme(readme.read_text(), results)
        if text != readme.read_text():
            write_text(readme, text)


def fill_readme(text: str, results: Path) -> str:
    """``text`` (a README) with each rendered block drawn anew from ``results``."""
    render = {"time": render_time_block, "findings": render_findings_block}
    for name in README_BLOCKS:
        start, end = markers(name)
        if start not in text or end not in text:
            raise ValueError(f"README.md lacks the rendered block {name!r}: put {start} and {end} on lines of their own")
        head, rest = text.split(start, 1)
        text = f"{head}{start}\n{render[name](results)}\n{end}{rest.split(end, 1)[1]}"
    return text
