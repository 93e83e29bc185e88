"""The findings a reader sees (results/<scale>/REPORT.md, results/cpu-vs-paper.md, the README's rendered
blocks) are renders of the committed tables, and the committed ones are exactly what a fresh render gives."""
import shutil
from pathlib import Path

import pytest

from qsd.paths import ROOT
from qsd.report import findings
from qsd.report.findings import Result, agreement, fill_readme, markers
from qsd.reproduce import main, publish, rendered

SAMPLED = ("fig1_masks",)  # drawn from fresh QSD samples: their last digits may move with the CPU's SIMD paths


def _copy_results(scale: str, dest: Path) -> Path:
    """results/<scale>/ without its run folders (a render reads only the collected files)."""
    shutil.copytree(ROOT / "results" / scale, dest / scale, ignore=shutil.ignore_patterns("runs"))
    return dest / scale


def test_committed_results_reports_and_readme_are_a_fresh_render(tmp_path):
    """What `make figures SCALE=cpu|paper` does on a clean clone, into a copy: every figure, table and report
    comes out byte for byte as committed (so `git status` stays clean), and so do the cpu-vs-paper comparison
    and the README's rendered blocks. A hand edit, or a renderer changed without re-rendering, fails here."""
    for scale in findings.SCALES:
        out = _copy_results(scale, tmp_path)
        committed = {p.relative_to(out): p.read_bytes() for p in rendered(out)}
        for extra in ([], ["--replicate"]):
            if not extra or (out / "replication" / "runs.csv").exists():
                assert main(["--scale", scale, "--render-only", "--results", str(tmp_path), *extra]) == 0
        fresh = {p.relative_to(out): p.read_bytes() for p in rendered(out)}
        assert sorted(fresh) == sorted(committed), f"{scale}: files added or removed by a render"
        stale = sorted(str(p) for p in fresh if fresh[p] != committed[p] and not p.name.startswith(SAMPLED))
        assert not stale, f"results/{scale}/: committed files differ from a fresh render: {stale} (run make figures)"
        assert not (out / "drawn_at.md").exists() or (out / "drawn_at.md").read_bytes() == \
            (ROOT / "results" / scale / "drawn_at.md").read_bytes(), "a render that changed nothing moved drawn_at.md"
    assert (tmp_path / "cpu-vs-paper.md").read_text() == (ROOT / "results" / "cpu-vs-paper.md").read_text()
    readme = (ROOT / "README.md").read_text()
    assert fill_readme(readme, tmp_path) == readme, "README.md's rendered blocks are stale (run make figures)"


def test_readme_stays_short_and_embeds_no_stale_block():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250 and len(readme.encode()) <= 25_000
    assert max(len(line) for line in readme.splitlines()) <= 400
    for name in findings.README_BLOCKS:
        assert all(m in readme for m in markers(name)), name


def test_every_report_embeds_every_drawn_figure():
    for scale in findings.SCALES:
        report = (ROOT / "results" / scale / "REPORT.md").read_text()
        for png in (ROOT / "results" / scale).glob("fig*.png"):
            assert f"]({png.name})" in report, f"{scale}: {png.name} is not embedded"


def test_a_render_that_changes_nothing_leaves_every_file_alone(tmp_path):
    """drawn_at.md names the code's commit once per scale, and moves only when a rendered file changed."""
    out = tmp_path / "cpu"
    out.mkdir()
    publish(out, "cpu", rendered(out))  # the first render writes REPORT.md: the stamp is written
    assert (out / "REPORT.md").exists() and "code commit" in (out / "drawn_at.md").read_text()
    (out / "drawn_at.md").unlink()
    publish(out, "cpu", rendered(out))  # nothing changed: no stamp
    assert not (out / "drawn_at.md").exists()
    (out / "table1_summary.csv").write_text("experiment,verdict\nMLP / MNIST (error %),not run yet at this scale\n")
    before = rendered(out)
    (out / "table1_summary.csv").write_text("experiment,verdict\nMLP / MNIST (error %),not run yet: x\n")
    publish(out, "cpu", before)
    assert (out / "drawn_at.md").exists()


@pytest.mark.parametrize("verdict, short", [
    ("no detectable difference", "no detectable difference, +0.10 [-0.07, +0.28]"),
    ("QSD worse (lost 1 of 5 seeds: diverged)", "QSD worse (lost 1 of 5 seeds: diverged), +0.10 [-0.07, +0.28]"),
    ("not comparable: dropout not converged (validation still improved 2.3% with 1.5x the epochs (60, not 40))",
     "withheld: dropout not converged"),
    ("not comparable: dropout does not beat none on validation (5.516 vs 5.246)", "withheld: dropout does not beat none"),
    ("not comparable: dropout not converged (validation still improved 2.7% with 1.5x the epochs (60, not 40)); QSD not "
     "converged (validation still improved 2.3% with 1.5x the epochs (60, not 40))",
     "withheld: dropout not converged; QSD not converged"),
    ("incomplete: 3 of 5 seeds finished (so far: dropout not converged ...)", "incomplete: 3 of 5 seeds finished"),
    ("incomplete: dropout's 1.5x-epoch runs missing for seed(s) 0, 1; none has finished 4 of 5 seeds",
     "incomplete: dropout's 1.5x-epoch runs missing, none has finished 4 of 5 seeds"),
    ("not run yet at this scale", "not run yet"),
    ("not testable at cpu scale: a WRN-16-8 is GPU work", "not testable at cpu scale"),
])
def test_a_verdict_in_a_few_words_keeps_its_word_interval_or_reason(verdict, short):
    assert Result(verdict, estimate="0.102 (5 pairs)", interval="[-0.07259, 0.2766]").short() == short


def test_two_scales_agree_by_their_words_or_say_which_gives_one():
    given = lambda v, d: Result(v, estimate=f"{d} (5 pairs)", interval=f"[{d - 1}, {d + 1}]")
    assert agreement(given("QSD better", -0.5), given("QSD better", -0.2)) == "yes"
    assert agreement(given("QSD better", -0.5), given("no detectable difference", 0.2)) == \
        "no; estimates of opposite sign"
    assert agreement(given("QSD better", -0.5), given("no detectable difference", -0.2)) == \
        "no; estimates of the same sign"
    assert agreement(given("not comparable: x", -0.002), given("QSD worse", 0.06)) == \
        "only paper gives a verdict; one estimate about 0"
    assert agreement(given("not comparable: x", -0.5), given("QSD worse", 0.2)) == \
        "only paper gives a verdict; estimates of opposite sign"
    assert agreement(given("not comparable: x", -0.5), given("not comparable: y", -0.2)) == \
        "both withheld; estimates of the same sign"
    assert agreement(Result("not testable at cpu scale"), given("QSD better", -1)) == "not compared: cpu has no estimate"


def test_a_readme_without_the_markers_is_refused_saying_what_to_add(tmp_path):
    with pytest.raises(ValueError, match="rendered:time"):
        fill_readme("# a README\n", tmp_path)


def test_the_committed_benchmark_summary_is_a_fresh_render_of_its_json():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_summary", ROOT / "benchmarks" / "summary.py")
    summary = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summary)
    bench = ROOT / "results" / "bench"
    assert summary.render(bench) == (bench / "summary.md").read_text(), "run benchmarks/summary.py"


def test_an_arm_that_lost_every_seed_renders_and_keeps_its_verdict():
    """Arm.cell() of an arm with no completed seed is 'n/a ± n/a (n=0; 5 diverged)': the report shows it and
    the verdict it was given (QSD lost every seed: QSD worse), with no estimate to print."""
    from qsd.report.findings import _arm

    assert _arm("n/a ± n/a (n=0; 5 diverged)") == "n/a (n=0; 5 diverged)"
    assert _arm("2.852 ± 0.1031 (n=5)") == "2.85 ± 0.10 (n=5)" and _arm("2.852 ± n/a (n=1)") == "2.85 (n=1)"
    lost = Result("QSD worse (lost 5 of 5 seeds: diverged)", estimate="n/a (0 pairs)", interval="[n/a, n/a]")
    assert lost.short() == "QSD worse (lost 5 of 5 seeds: diverged)"
    assert agreement(lost, Result("QSD worse", estimate="0.5 (5 pairs)", interval="[0.1, 0.9]")) == "yes"
