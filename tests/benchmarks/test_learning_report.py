"""``benchmarks.learning``'s second edition on made-up finished cells (no training): report seeds, the mean with its
stratified interval, the within-trial curves and adaptation seconds, the best learner, the compute, and the README's
table between its markers; and that no plan in ``benchmarks/plans`` tuned on a report seed."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmarks.learning import cells, report
from benchmarks.learning.__main__ import main
from benchmarks.learning.plan import load_plan
from evaluation.protocol import config_dict
from evaluation.statistics import stratified_bootstrap_ci
from meta.config import steps_per_iteration, to_dict
from meta.runs import Training

ROOT = Path(__file__).resolve().parents[2]
PLANS = sorted((ROOT / "benchmarks" / "plans").glob("*.yaml"))
REPORT_SEEDS = [9101, 9102, 9103]
PLAN = {
    "notes": "made-notes.md",
    "eval": {
        "n_tasks": 4,
        "steps": 2,
        "support_episodes": 2,
        "eval_episodes": 2,
        "splits": ["test", "val"],
        "baselines": ["scratch"],
        "report_seeds": REPORT_SEEDS,
    },
    "families": {
        "point": {
            "headline": "maml",
            "gradient": "maml",
            "in_context": ["rl2", "context"],
            "minutes": {"train": 1, "eval": 1},
        },
        "cheetah": {"headline": "maml", "minutes": {"train": 1, "eval": 1}},
    },
    "cells": [
        {"family": "point", "algo": ["maml", "rl2", "context"], "seeds": [0, 1]},
        {"family": "point", "algo": ["maml", "rl2", "context"], "seeds": [2], "train": {}},
        {"family": "cheetah", "algo": "maml", "seeds": [0]},
    ],
}
# success of each (algo, run seed) on each task after k = 0, 1, 2 rounds: rl2 is point's best after K on test
SUCCESS = {"maml": (0.0, 0.25, 0.5), "rl2": (0.25, 0.5, 0.75), "context": (0.0, 0.0, 0.25), "scratch": (0.0, 0.0, 0.5)}
SECONDS = {"maml": {"support": 0.02, "adapt": 0.01}, "rl2": {"support": 0.04, "adapt": 0.0}}


def _per_task(method: str, seed: int, split: str) -> list[list[float]]:
    """[K + 1][n_tasks] success: the method's level, plus a per-run offset so that the runs differ."""
    shift = 0.25 * seed if split == "test" else 0.0
    return [[min(1.0, v + shift * (t % 2)) for t in range(4)] for v in SUCCESS[method]]


def _within(method: str, seed: int) -> list[dict]:
    """A within-trial curve of 4 support episodes, the cell's mean rising with the episode and the run seed."""
    return [
        {"n": 4.0, "mean": 0.1 * e + 0.05 * seed, "mean_ci_low": 0.1 * e, "mean_ci_high": 0.1 * e + 0.2}
        for e in range(4)
    ]


def _write_cells(plan, runs: Path, without_within: tuple[str, ...] = ()) -> None:
    """Every cell of ``plan`` as finished: its ``metrics.csv`` (one second per iteration of its config) and each split's
    ``eval.json`` under its protocol (``without_within``: cells whose evaluation predates within-trial curves)."""
    for cell in plan.cells:
        run = runs / cell.name
        run.mkdir(parents=True)
        with (run / "metrics.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["iteration", "env_steps", "perf/iteration_s"])
            w.writeheader()
            steps = steps_per_iteration(cell.train)
            w.writerows({"iteration": i, "env_steps": steps * i, "perf/iteration_s": 1.0} for i in range(1, 301))
        for split in cell.eval.splits:
            methods = {}
            for m in (cell.algo, "scratch"):
                per_task = _per_task(cell.algo if m == cell.algo else m, cell.seed, split)
                methods[m] = {
                    "adaptation_env_steps_per_task": 200,
                    "per_task": {"success": [per_task], "return": [per_task], "length": [per_task]},
                }
                if cell.name not in without_within:
                    methods[m] |= {
                        "within_trial": _within(m, cell.seed),
                        "adaptation_seconds_per_task": SECONDS.get(cell.algo if m == cell.algo else "maml", {})
                        or {"support": 0.03, "adapt": 0.0},
                    }
            results = {
                "config": config_dict(cell.eval_config(split)),
                "eval_seconds": {m: 30.0 for m in methods},
                "trained_in": {cell.algo: "."},
                "baseline_settings": {},
                "methods": methods,
            }
            (run / "eval" / split).mkdir(parents=True)
            (run / "eval" / split / "eval.json").write_text(json.dumps(results))


@pytest.fixture
def made(tmp_path):
    (tmp_path / "made.yaml").write_text(yaml.safe_dump(PLAN, sort_keys=False))
    (tmp_path / "made-notes.md").write_text("Tuned on val seeds 0, 1 and 2.\n")
    plan = load_plan(tmp_path / "made.yaml")
    _write_cells(plan, tmp_path / "results" / "made", without_within=("point-context-seed2",))
    return plan, tmp_path


# ---- report seeds ---------------------------------------------------------------------------------------------------
def test_each_run_draws_the_reported_splits_with_its_own_report_seed_and_val_with_its_run_seed(made):
    plan, _ = made
    for algo in ("maml", "rl2", "context"):
        group = plan.groups()[("point", algo)]
        assert [c.seed for c in group] == [0, 1, 2]  # plan order, across the two entries
        assert [c.eval_seed("test") for c in group] == [c.eval_seed("ood") for c in group] == REPORT_SEEDS
        assert [c.eval_seed("val") for c in group] == [0, 1, 2]
        assert [c.eval_config("test").seeds for c in group] == [(s,) for s in REPORT_SEEDS]
    assert plan.groups()[("cheetah", "maml")][0].eval_seed("test") == 9101
    # without report seeds every split keeps the run's seed: the cached headline evaluations stay valid
    (smoke,) = load_plan(ROOT / "benchmarks" / "plans" / "smoke.yaml").cells
    assert smoke.report_seed is None and smoke.eval_seed("test") == smoke.seed


def test_the_headline_cells_without_report_seeds_keep_their_cached_evaluations():
    # evaluated with their run seeds before report seeds existed: still done while the plan reserves none for them
    plan, runs = load_plan(ROOT / "benchmarks" / "plans" / "headline.yaml"), ROOT / "results" / "headline"
    old = [c for c in plan.cells if c.report_seed is None and (runs / c.name / "metrics.csv").is_file()]
    assert all(cells.progress(c, runs / c.name).state(c) == "done" for c in old)


def report_seed_mentions(plan) -> list[str]:
    """Where a plan's tuning material names one of its report seeds as a whole word: its notes, docs/training.md
    (where the in-context learners' settings were chosen), and every run's training config (and its trained
    baselines' settings)."""
    reserved = {s for c in plan.cells for s in c.eval.report_seeds}
    if not reserved:
        return []
    word = re.compile(r"\b(" + "|".join(map(str, sorted(reserved))) + r")\b")
    texts = {str(plan.notes): plan.notes.read_text()} if plan.notes else {}
    texts["docs/training.md"] = (ROOT / "docs" / "training.md").read_text()
    for c in plan.cells:
        settings = {k: v for k, v in to_dict(c.train).items() if k != "seed"}  # the run seed is checked apart
        texts[f"{c.name} train"] = yaml.safe_dump(settings) + yaml.safe_dump(dict(c.baseline_settings))
    return [f"{where}: {m.group()}" for where, text in texts.items() for m in word.finditer(text)]


@pytest.mark.parametrize("path", PLANS, ids=lambda p: p.name)
def test_no_plan_tuned_on_a_report_seed(path):
    plan = load_plan(path)
    assert report_seed_mentions(plan) == []
    assert not {c.seed for c in plan.cells} & {s for c in plan.cells for s in c.eval.report_seeds}


def test_a_report_seed_named_in_the_notes_or_a_training_config_is_found(made):
    plan, tmp = made
    assert report_seed_mentions(plan) == []
    (tmp / "made-notes.md").write_text("Tuned with --seeds 9102 on test (91020 and 19101 are other numbers).\n")
    assert report_seed_mentions(load_plan(tmp / "made.yaml")) == [f"{tmp / 'made-notes.md'}: 9102"]
    changed = json.loads(json.dumps(PLAN))
    changed["families"]["cheetah"]["train"] = {"iterations": 9103}
    (tmp / "made.yaml").write_text(yaml.safe_dump(changed, sort_keys=False))
    assert "cheetah-maml-seed0 train: 9103" in report_seed_mentions(load_plan(tmp / "made.yaml"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["eval"].update(report_seeds=[9101, 9101, 9103]), "eval.report_seeds=[9101, 9101, 9103] is not"),
        (lambda p: p["eval"].update(report_seeds=[9101, -1, 3]), "eval.report_seeds=[9101, -1, 3] is not allowed"),
        (lambda p: p["eval"].update(report_seeds=[]), "eval.report_seeds=[] is not allowed: expected a list"),
        (lambda p: p["eval"].update(report_seeds="9101"), "eval.report_seeds='9101' is not allowed"),
        (
            lambda p: p["eval"].update(report_seeds=[9101, 9102]),
            "eval.report_seeds=[9101, 9102] is not allowed: point maml has 3 seeds (0, 1, 2), expected a report seed "
            "for each",
        ),
        (
            lambda p: p["eval"].update(report_seeds=[9101, 2, 9103]),
            "eval.report_seeds=[9101, 2, 9103] is not allowed: 2 is also a run seed of the plan",
        ),
        (
            lambda p: p["cells"][2].update(eval={"report_seeds": [0]}),
            "cells[2].eval.report_seeds=[0] is not allowed: 0 is also a run seed of the plan",
        ),
        (
            lambda p: p["cells"][1].update(eval={"report_seeds": [7]}),
            "point-maml-seed2 has other train or eval settings than point-maml-seed0",
        ),
        (
            lambda p: p["families"]["point"].update(gradient="rl2"),
            "families.point.gradient='rl2' is not allowed: expected a gradient-based algo of the family's cells (maml)",
        ),
        (
            lambda p: p["families"]["cheetah"].update(in_context=["rl2"]),
            "families.cheetah.in_context=['rl2'] is not allowed: expected a list of in-context algos of the family's "
            "cells (none)",
        ),
        (lambda p: p["families"]["point"].update(in_context="rl2"), "families.point.in_context='rl2' is not allowed"),
    ],
)
def test_a_bad_report_seed_or_learner_exits_2_with_one_line_naming_the_field(tmp_path, capsys, change, message):
    plan = json.loads(json.dumps(PLAN))
    del plan["notes"]
    change(plan)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    with pytest.raises(SystemExit) as e:
        main(["--plan", str(tmp_path / "bad.yaml"), "--results", str(tmp_path / "results"), "--status"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_learners_default_to_the_headline_and_the_familys_in_context_cells(made):
    plan, tmp = made
    assert plan.families["point"].candidates == ("maml", "rl2", "context")
    assert (plan.families["cheetah"].gradient, plan.families["cheetah"].in_context) == ("maml", ())
    defaults = json.loads(json.dumps(PLAN))
    del defaults["families"]["point"]["gradient"], defaults["families"]["point"]["in_context"]
    (tmp / "made.yaml").write_text(yaml.safe_dump(defaults, sort_keys=False))
    f = load_plan(tmp / "made.yaml").families["point"]
    assert (f.gradient, f.in_context) == ("maml", ("rl2", "context"))


# ---- the report -----------------------------------------------------------------------------------------------------
def test_records_give_the_mean_with_its_interval_stratified_by_run(made):
    plan, tmp = made
    records = report.make_records(plan, tmp / "results" / "made")
    assert all(list(r) == list(report.RECORD_KEYS) for r in records)
    r = next(
        r
        for r in records
        if (r["family"], r["algo"], r["split"], r["method"], r["k"]) == ("point", "rl2", "test", "rl2", 2)
    )
    runs = [np.array(_per_task("rl2", seed, "test")[2]) for seed in (0, 1, 2)]
    assert r["success_mean"] == pytest.approx(np.concatenate(runs).mean()) == r["return_mean"]
    assert (r["success_mean_ci_low"], r["success_mean_ci_high"]) == stratified_bootstrap_ci(runs, np.mean)
    assert r["success_mean_ci_low"] < r["success_mean"] < r["success_mean_ci_high"] and r["seeds"] == [0, 1, 2]


def test_within_trial_curves_average_the_cells_and_leave_out_evaluations_without_one(made):
    plan, tmp = made
    evaluations = report.collect_results(plan, tmp / "results" / "made")
    curve = report.within_trial(evaluations[("point", "maml", "test")])["maml"]
    assert curve["seeds"] == [0, 1, 2] and len(curve["rows"]) == 4
    first = curve["rows"][0]
    assert first["mean"] == pytest.approx(0.05)  # (0 + 0.05 + 0.1) / 3
    se = np.sqrt(3 * (0.2 / (2 * report.Z95)) ** 2) / 3  # each cell's interval 0.2 wide
    assert (first["mean_ci_low"], first["mean_ci_high"]) == pytest.approx((0.0, 0.05 + report.Z95 * se))
    assert curve["seconds"] == pytest.approx(SECONDS["maml"])
    context = report.within_trial(evaluations[("point", "context", "test")])["context"]
    assert context["seeds"] == [0, 1]  # seed 2's eval.json predates within-trial curves


def test_results_md_shows_the_best_learner_the_within_trial_curves_the_cost_and_the_compute(made):
    plan, tmp = made
    runs, out = tmp / "results" / "made", tmp / "docs"
    records = report.make_records(plan, runs)
    assert report.write_report(plan, runs, out, records, "python -m benchmarks.learning") is False
    md = (out / "results.md").read_text()
    assert "test and ood numbers come from eval seeds 9101, 9102, 9103, reserved for reporting: no setting was " in md
    assert "tuning used val draws" in md and "rliable's `StratifiedBootstrap` is not used" in md
    table = md.split("## Headline")[1].split("\n\n")[2].splitlines()
    rows = [dict(zip(_cells(table[0]), _cells(line), strict=True)) for line in table[2:]]
    by = {(r["family"], r["algo"], r["split"], r["method"], r["k"]): r for r in records}
    assert [(r["family"], r["split"], r["best learner"]) for r in rows] == [
        ("point", "test", "rl2"),
        ("point", "val", "rl2"),  # chosen on test, shown on every split
        ("cheetah", "test", "maml"),
        ("cheetah", "val", "maml"),
    ]
    point = rows[0]
    assert point["K × support"] == "2 × 2"
    before, after = (report._success(by["point", "rl2", "test", "rl2", k]) for k in (0, 2))
    assert point["before → after (mean [95 % CI])"] == f"{before} → {after}"
    assert point["best baseline after K (mean [95 % CI])"] == "scratch " + report._success(
        by["point", "rl2", "test", "scratch", 2]
    )
    assert point["learners after K (mean)"].startswith("maml ") and ", rl2 " in point["learners after K (mean)"]
    for section in ("## Within a trial", "## Adaptation cost", "## Compute"):
        assert section in md
    assert "(img/within-trial-point.png)" in md and (out / "img" / "within-trial-point.png").stat().st_size > 0
    assert "| point | rl2 | forward passes | 2 × 2 | 40.0 | 0.0 | 0.0 |" in md
    # 10 cells × (300 s of training + 2 splits × 2 methods × 30 s), 6 of them new
    assert "The plan's 10 cells took 1.2 process-hours so far" in md
    # the 4 maml cells' test evaluations (2 methods × 30 s) on report draws
    assert "Of them, the 6 new cells (algo `rl2` or `context`) took 0.7 process-hours; evaluating 4 cells" in md
    assert "| point | 9 | 1.1 | 6 | 0.7 | 3 | 0.1 |" in md
    assert "--seeds R` on test, with the report seed R of S: 0 → 9101, 1 → 9102, 2 → 9103" in md
    assert "--seeds 9101 --video-only" in md


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_the_readme_table_between_the_markers_is_the_functions_and_a_readme_without_them_is_untouched(made):
    plan, tmp = made
    runs, out = tmp / "results" / "made", tmp / "docs"
    records = report.make_records(plan, runs)
    table = report.readme_table(plan, records)
    lines = table.splitlines()
    assert _cells(lines[0]) == [
        "family",
        "best learner",
        "K × support",
        "seeds",
        "before → after (mean [95 % CI])",
        "best baseline",
        "oracle (k = 0)",
    ]
    assert [_cells(line)[:4] for line in lines[2:]] == [
        ["point", "rl2", "2 × 2", "0, 1, 2"],
        ["cheetah", "maml", "2 × 2", "0"],
    ]
    readme = tmp / "README.md"
    text = f"# robometa\n\nIntro.\n\n{report.README_BEGIN}\nold table\n{report.README_END}\n\nMore.\n"
    readme.write_text(text)
    assert report.write_report(plan, runs, out, records, "command", readme)
    written = readme.read_text()
    assert written.split(report.README_BEGIN)[1].split(report.README_END)[0] == "\n" + table
    assert written.replace("\n" + table, "\nold table\n") == text
    report.write_report(plan, runs, out, records, "command", readme)  # again: the same bytes
    assert readme.read_text() == written
    for unmarked in ("# robometa\n\nNo markers.\n", f"# robometa\n{report.README_END}\n{report.README_BEGIN}\n"):
        readme.write_bytes(unmarked.encode())
        assert not report.write_report(plan, runs, out, records, "command", readme)
        assert readme.read_bytes() == unmarked.encode()


def test_the_command_line_rewrites_the_readme_only_when_asked_or_reporting_into_docs(made, monkeypatch):
    _, tmp = made
    readme = tmp / "README.md"
    marked = f"{report.README_BEGIN}\n{report.README_END}\n"
    readme.write_text(marked)
    monkeypatch.chdir(tmp)
    args = ["--plan", str(tmp / "made.yaml"), "--results", str(tmp / "results"), "--report"]
    assert main([*args, "--out", str(tmp / "elsewhere")]) == 0
    assert readme.read_text() == marked
    assert main([*args, "--out", str(tmp / "elsewhere"), "--readme", str(readme)]) == 0
    assert readme.read_text() != marked
    readme.write_text(marked)
    (tmp / "made.yaml").write_text(yaml.safe_dump({**PLAN, "out": "docs"}, sort_keys=False))  # the plan's own out: docs
    assert main(args) == 0
    assert "| point | rl2 |" in readme.read_text() and (tmp / "docs" / "results.md").is_file()


def test_status_says_the_process_hours_of_the_cells_not_done(made, capsys):
    _, tmp = made
    more = json.loads(json.dumps(PLAN))
    more["cells"][2]["seeds"] = [0, 1]  # cheetah seed 1: not trained, estimated from its family's measured seconds
    (tmp / "made.yaml").write_text(yaml.safe_dump(more, sort_keys=False))
    assert main(["--plan", str(tmp / "made.yaml"), "--results", str(tmp / "results"), "--status"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    # 300 iterations at 1 s, then 2 splits × 2 methods at 30 s
    assert last.startswith("10 done, 0 partial, 1 todo of 11 cells: about 7 min left on this machine")
    assert last.endswith("one process at a time; 0.1 process-hours in the 1 cell not done")


def test_a_trained_baseline_is_estimated_by_the_env_steps_of_the_run_whose_budget_it_trains_at(tmp_path):
    (tmp_path / "made.yaml").write_text(yaml.safe_dump({**PLAN, "eval": {**PLAN["eval"], "baselines": ["multitask"]}}))
    (tmp_path / "made-notes.md").write_text("Tuned on val seeds 0, 1 and 2.\n")
    plan = load_plan(tmp_path / "made.yaml")
    estimator = cells.Estimator(plan, tmp_path / "results")  # nothing measured yet
    estimator.step_s[("point", "multitask")] = [10.0, 1000]  # 0.01 s per env step
    by_algo = {c.algo: c for c in plan.cells if c.family == "point"}
    for algo in ("maml", "rl2"):  # rl2's trials take more env steps per iteration than maml's support and query
        cell = by_algo[algo]
        left = estimator.training_left(cell, Training(), "multitask")
        assert left == pytest.approx(0.01 * cell.train.iterations * steps_per_iteration(cell.train))
    assert steps_per_iteration(by_algo["rl2"].train) > steps_per_iteration(by_algo["maml"].train)


def test_a_learner_without_baselines_is_compared_with_those_of_the_familys_cells_on_the_same_protocol_and_draws(
    tmp_path,
):
    borrowing = {k: v for k, v in json.loads(json.dumps(PLAN)).items() if k != "notes"}
    borrowing["cells"] = [
        {"family": "point", "algo": "maml", "seeds": [0, 1, 2]},
        {"family": "point", "algo": "rl2", "seeds": [0], "eval": {"baselines": [], "report_seeds": [9101]}},
        # another K: not the same budget, so maml's baselines are not its
        {
            "family": "point",
            "algo": "context",
            "seeds": [0],
            "eval": {"baselines": [], "steps": 3, "report_seeds": [9101]},
        },
        {"family": "cheetah", "algo": "maml", "seeds": [0]},
    ]
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(borrowing, sort_keys=False))
    plan = load_plan(tmp_path / "b.yaml")
    assert report.baselines_of(plan, "point", "rl2") == "maml"
    assert report.baselines_of(plan, "point", "context") == "context"
    assert report.baselines_of(plan, "point", "maml") == "maml"
    # drawn with a seed maml's cells never drew with: no borrowing
    borrowing["cells"][1]["eval"]["report_seeds"] = [9104]
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(borrowing, sort_keys=False))
    assert report.baselines_of(load_plan(tmp_path / "b.yaml"), "point", "rl2") == "rl2"


def test_the_family_plot_shows_the_best_learner_with_the_baselines_it_is_compared_with(tmp_path, monkeypatch):
    borrowing = {k: v for k, v in json.loads(json.dumps(PLAN)).items() if k != "notes"}
    borrowing["cells"] = [
        {"family": "point", "algo": "maml", "seeds": [0, 1, 2]},
        {"family": "point", "algo": "rl2", "seeds": [0, 1], "eval": {"baselines": [], "report_seeds": [9101, 9102]}},
        {"family": "cheetah", "algo": "maml", "seeds": [0]},
    ]
    borrowing["families"]["point"]["in_context"] = ["rl2"]
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(borrowing, sort_keys=False))
    plan = load_plan(tmp_path / "b.yaml")
    runs = tmp_path / "results" / "b"
    _write_cells(plan, runs)
    for seed in (0, 1):  # rl2's cells measured no baseline: their scratch is maml's
        for split in ("test", "val"):
            path = runs / f"point-rl2-seed{seed}" / "eval" / split / "eval.json"
            results = json.loads(path.read_text())
            del results["methods"]["scratch"]
            path.write_text(json.dumps(results))
    drawn, draw = {}, report.plot

    def recording(lines, title, path):
        drawn[title] = list(lines)
        draw(lines, title, path)

    monkeypatch.setattr(report, "plot", recording)
    records = report.make_records(plan, runs)
    report.write_report(plan, runs, tmp_path / "docs", records, "python -m benchmarks.learning")
    point = {t: lines for t, lines in drawn.items() if t.startswith("point")}
    assert point == {
        f"point: rl2 and maml on {split} (4 tasks × seeds 0, 1{drawn_with})": [
            "rl2",
            "maml (seed 0, 1, 2)",  # measured on a run the title does not name
            "scratch (seed 0, 1, 2)",
        ]
        for split, drawn_with in (("test", ", eval seeds 9101, 9102"), ("val", ""))
    }
    assert (tmp_path / "docs" / "img" / "results-point.png").stat().st_size > 0
