"""``benchmarks.learning``: the smoke plan runs end to end into a well-formed ``results.json``, ``--status`` then
says every cell is done, a second run does no work, and a bad plan exits 2 with one line naming the field.

(Named ``test_learning_plan.py``: the tests have no packages, so module names must differ from
``tests/meta/test_learning.py``.)"""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import pytest

from benchmarks.learning import cells, report
from benchmarks.learning.__main__ import main
from benchmarks.learning.plan import load_plan
from envs.family import HELD_OUT

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "benchmarks" / "plans" / "smoke.yaml"


def plan_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.learning", *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    """The smoke plan run once into a temporary folder: ``results/`` (runs) and ``docs/`` (the report)."""
    tmp = tmp_path_factory.mktemp("smoke")
    out = plan_cli("--plan", str(SMOKE), "--results", str(tmp / "results"), "--out", str(tmp / "docs"))
    assert out.returncode == 0, out.stderr[-3000:]
    return tmp


def test_results_json_has_one_well_formed_record_per_family_algo_split_method_and_k(smoke):
    plan = load_plan(SMOKE)
    (cell,) = plan.cells
    records = json.loads((smoke / "docs" / "results.json").read_text())
    keys = [(r["family"], r["algo"], r["split"], r["method"], r["k"]) for r in records]
    methods = (cell.algo, *cell.eval.baselines)
    expected = {
        (cell.family, cell.algo, split, method, k)
        for split in cell.eval.splits
        for method in methods
        for k in range(cell.eval.steps + 1)
    }
    assert len(keys) == len(set(keys)) and set(keys) == expected
    per_step = cell.eval.support_episodes * 50  # point episodes are 50 steps
    for r in records:
        assert list(r) == list(report.RECORD_KEYS)
        numbers = [r[k] for k in report.RECORD_KEYS[5:-1]]
        assert 0 <= r["success_mean_ci_low"] <= r["success_mean"] <= r["success_mean_ci_high"] <= 1, r
        assert all(isinstance(x, float | int) and math.isfinite(x) for x in numbers), r
        assert r["success_ci_low"] <= r["success_iqm"] <= r["success_ci_high"], r
        assert r["success_ci_low"] >= 0 and r["success_ci_high"] <= 1 and r["wall_clock_s"] > 0
        assert r["seeds"] == [cell.seed]
        untrained = r["method"] in ("scratch", "sb3")
        assert (r["env_steps"] == r["k"] * per_step) if untrained else (r["env_steps"] > r["k"] * per_step), r
    md = (smoke / "docs" / "results.md").read_text()
    assert "| point | test | maml | 1 × 2 | 0 |" in md and "(img/results-point.png)" in md
    assert (smoke / "docs" / "img" / "results-point.png").stat().st_size > 0


def test_search_is_charged_the_training_of_the_oracle_whose_policy_it_tells(smoke):
    records = json.loads((smoke / "docs" / "results.json").read_text())
    steps = {(r["split"], r["method"], r["k"]): r["env_steps"] for r in records}
    searched = [(split, k) for split, method, k in steps if method == "search"]
    assert searched and all(steps[s, "search", k] == steps[s, "oracle", k] for s, k in searched)
    assert steps["test", "search", 0] > 0  # the oracle's training, before any episode of the search


def test_the_video_command_in_results_md_renders_the_headline_run(smoke):
    md = (smoke / "docs" / "results.md").read_text()
    (line,) = [line for line in md.splitlines() if line.startswith("- `point`: `python evaluate.py")]
    command, written = re.fullmatch(r"- `point`: `python (evaluate\.py .*)` writes `(.*)`", line).groups()
    out = subprocess.run([sys.executable, *shlex.split(command)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert iio.imread(ROOT / written).shape[0] == 50  # one point episode, before beside after


def test_status_then_reports_every_cell_done(smoke):
    out = plan_cli("--plan", str(SMOKE), "--results", str(smoke / "results"), "--status")
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert lines[1].split()[:2] == ["point-maml-seed0", "done"]
    assert lines[-1].startswith("1 done, 0 partial, 0 todo of 1 cells")
    assert lines[-1].endswith("0.0 process-hours in the 0 cells not done")


def test_a_second_run_does_no_work(smoke):
    files = {p: p.stat().st_mtime_ns for p in (smoke / "results").rglob("*") if p.is_file()}
    out = plan_cli("--plan", str(SMOKE), "--results", str(smoke / "results"), "--out", str(smoke / "again"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in (smoke / "results").rglob("*") if p.is_file()} == files
    assert (smoke / "again" / "results.json").read_text() == (smoke / "docs" / "results.json").read_text()


def test_a_plan_asking_fewer_baselines_reuses_the_cached_evaluation_without_them(smoke, tmp_path):
    # The same plan name (so the same runs) without the oracle: nothing runs again, and the oracle is not reported.
    (tmp_path / "smoke.yaml").write_text(SMOKE.read_text().replace("sb3, oracle, search]", "sb3]"))
    files = {p: p.stat().st_mtime_ns for p in (smoke / "results").rglob("*") if p.is_file()}
    out = plan_cli("--plan", str(tmp_path / "smoke.yaml"), "--results", str(smoke / "results"), "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in (smoke / "results").rglob("*") if p.is_file()} == files
    records = json.loads((tmp_path / "results.json").read_text())
    full = json.loads((smoke / "docs" / "results.json").read_text())
    assert {r["method"] for r in records} == {"maml", "scratch", "multitask", "sb3"}
    assert records == [r for r in full if r["method"] not in ("oracle", "search")]


def test_a_baseline_added_to_the_plan_is_measured_alone_and_the_cached_methods_are_kept(smoke, tmp_path):
    import shutil

    results = tmp_path / "results"
    shutil.copytree(smoke / "results", results)
    evals = sorted(results.glob("*/eval/*/eval.json"))
    before = {e: json.loads(e.read_text()) for e in evals}
    for e, r in before.items():  # as if evaluated before the plan asked for search
        del r["methods"]["search"], r["eval_seconds"]["search"]
        e.write_text(json.dumps(r))
    out = plan_cli("--plan", str(SMOKE), "--results", str(results), "--out", str(tmp_path / "docs"))
    assert out.returncode == 0, out.stderr[-3000:]
    full = json.loads((smoke / "docs" / "results.json").read_text())
    for e, r in before.items():
        after = json.loads(e.read_text())
        assert after["methods"] == json.loads((smoke / "results" / e.relative_to(results)).read_text())["methods"]
        assert {m: s for m, s in after["eval_seconds"].items() if m != "search"} == r["eval_seconds"]
    # the same numbers as measuring every method at once, up to the wall clock it took
    records = json.loads((tmp_path / "docs" / "results.json").read_text())
    assert [{**r, "wall_clock_s": 0} for r in records] == [{**r, "wall_clock_s": 0} for r in full]


def test_changed_baseline_settings_refuse_the_cached_baselines_and_once_they_are_replaced_measure_them_again(
    smoke, tmp_path
):
    import shutil

    import yaml

    shutil.copytree(smoke / "results", tmp_path / "results")
    settings = "normalize_obs: false}\n    baseline_settings: {log_std_init: -1}"
    (tmp_path / "smoke.yaml").write_text(SMOKE.read_text().replace("normalize_obs: false}", settings))
    args = ["--plan", str(tmp_path / "smoke.yaml"), "--results", str(tmp_path / "results"), "--status"]
    out = plan_cli(*args)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert (
        "multitask-3 was trained with log_std_init=0.0, but the plan now says -1.0: restore the plan, or delete the "
        "folder to train the baseline again" in out.stderr
    )
    (cell,) = load_plan(tmp_path / "smoke.yaml").cells
    run = tmp_path / "results" / "smoke" / cell.name
    # as if the oracle were trained again with the settings in its place, and the multitask baseline deleted
    saved = yaml.safe_load((run / "eval" / "oracle-3" / "config.yaml").read_text())
    (run / "eval" / "oracle-3" / "config.yaml").write_text(yaml.safe_dump({**saved, "log_std_init": -1.0}))
    shutil.rmtree(run / "eval" / "multitask-3")
    out = plan_cli(*args)
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1].startswith("0 done, 1 partial, 0 todo")
    assert cells.progress(cell, run).unmeasured == {s: ["multitask", "oracle", "search"] for s in ("test", "ood")}
    # the plan's own measurements record the settings they were made with
    assert all(json.loads(e.read_text())["baseline_settings"] == {} for e in (smoke / "results").rglob("eval.json"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.write_text(json.dumps({**json.loads(r.read_text()), "obs_dim": 3})), "(its obs_dim differs)"),
        (lambda r: r.unlink(), "has no family.json: the family it trained on is unknown"),
    ],
)
def test_a_cell_trained_on_another_version_of_its_family_is_refused(smoke, tmp_path, change, message):
    subprocess.run(["cp", "-r", str(smoke / "results"), str(tmp_path / "results")], check=True)
    change(tmp_path / "results" / "smoke" / "point-maml-seed0" / "family.json")
    out = plan_cli("--plan", str(SMOKE), "--results", str(tmp_path / "results"), "--status")
    assert out.returncode == 2 and message in out.stderr and "delete the folder" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_cell_trained_with_another_config_than_the_plan_now_says_is_refused(smoke, tmp_path):
    # The same plan name (so the same runs) with another inner step size: even --status refuses the run.
    (tmp_path / "smoke.yaml").write_text(SMOKE.read_text().replace("inner_lr: 1.0", "inner_lr: 0.5"))
    out = plan_cli("--plan", str(tmp_path / "smoke.yaml"), "--results", str(smoke / "results"), "--status")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert (
        "point-maml-seed0 was trained with inner_lr=1.0, but the plan now says 0.5: restore the plan, or delete the "
        "folder to train the cell again" in out.stderr
    )


def test_the_plans_notes_are_shown_in_results_md_under_what_mattered(smoke, tmp_path):
    (tmp_path / "smoke.yaml").write_text(SMOKE.read_text() + "notes: smoke-notes.md\n")
    (tmp_path / "smoke-notes.md").write_text("The inner step size mattered.\n")
    args = ("--plan", str(tmp_path / "smoke.yaml"), "--results", str(smoke / "results"), "--out", str(tmp_path))
    out = plan_cli(*args, "--report")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "## What mattered\n\nThe inner step size mattered.\n" in (tmp_path / "results.md").read_text()


def test_seeds_of_one_family_and_algo_may_run_different_baselines_but_not_another_protocol(tmp_path):
    import yaml

    plan = yaml.safe_load(SMOKE.read_text())
    plan["cells"] = [
        {"family": "point", "algo": "maml", "seeds": [0]},
        {"family": "point", "algo": "maml", "seeds": [1], "eval": {"baselines": ["scratch"]}},
    ]
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(plan))
    planned = load_plan(tmp_path / "ok.yaml").cells
    assert [c.eval.baselines for c in planned] == [("scratch", "multitask", "sb3", "oracle", "search"), ("scratch",)]
    plan["cells"][1]["eval"]["n_tasks"] = 5
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(plan))
    with pytest.raises(ValueError, match="point-maml-seed1 has other train or eval settings than point-maml-seed0"):
        load_plan(tmp_path / "bad.yaml")


def test_status_estimates_what_is_left_from_the_finished_cells(smoke, tmp_path, capsys):
    # The same plan name (so the same runs) with a second seed: that cell is todo, estimated from seed 0's times.
    text = SMOKE.read_text().replace("seeds: [0]", "seeds: [0, 1]")
    (tmp_path / "smoke.yaml").write_text(text)
    assert main(["--plan", str(tmp_path / "smoke.yaml"), "--results", str(smoke / "results"), "--status"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[:2] for line in lines[1:3]] == [["point-maml-seed0", "done"], ["point-maml-seed1", "todo"]]
    assert lines[-1].startswith("1 done, 0 partial, 1 todo of 2 cells: about ")
    plan = load_plan(tmp_path / "smoke.yaml")
    estimator = cells.Estimator(plan, smoke / "results")
    todo = plan.cells[1]
    left = estimator.left(todo, cells.progress(todo, smoke / "results" / todo.name))
    assert 0 < left < 60  # measured: seconds, not the plan's default minutes


def test_a_plan_may_evaluate_any_held_out_split_and_the_report_shows_test_ood_then_val(tmp_path):
    import yaml

    (tmp_path / "val.yaml").write_text(yaml.safe_dump(_with("eval.splits", ["val", "test"])))
    plan = load_plan(tmp_path / "val.yaml")
    assert plan.cells[0].eval.splits == ("val", "test") and load_plan(SMOKE).cells[0].eval.splits == ("test", "ood")
    assert sorted(report.SPLITS) == sorted(HELD_OUT) and report.SPLITS[:2] == ("test", "ood")
    numbers = (0.5, 0.4, 0.6, 0.5, 0.4, 0.6, -1.0, -1.0, 0, 1.0, [0])
    records = [
        dict(zip(report.RECORD_KEYS, ("point", "maml", split, method, k, *numbers), strict=True))
        for split in ("val", "test")
        for method in ("maml", "scratch")
        for k in (0, 1)
    ]
    md = report.markdown(plan, tmp_path, records, {}, "python -m benchmarks.learning")
    for section in ("## Headline", "## Every algorithm and baseline"):
        table = md.split(section)[1].split("\n\n")[2].splitlines()[2:]
        column = 2 if section == "## Headline" else 3
        assert list(dict.fromkeys(line.split("|")[column].strip() for line in table)) == ["test", "val"], section


def test_the_headline_shows_each_records_numbers_under_its_column_and_the_oracle_before_adapting(tmp_path):
    plan = load_plan(SMOKE)
    (cell,) = plan.cells
    steps, methods = cell.eval.steps, (cell.algo, *cell.eval.baselines)
    records = {}
    for s, split in enumerate(("test", "ood")):
        for i, method in enumerate(methods):
            for k in range(steps + 1):
                v = (20 * i + 5 * k + s) / 100  # a different success for every split, method and k
                values = ("point", cell.algo, split, method, k, v + 0.005, v - 0.01, v + 0.02, v, v - 0.02, v + 0.03)
                values += (-1.0, -2.0, 0, 1.0, [0])
                records[split, method, k] = dict(zip(report.RECORD_KEYS, values, strict=True))
    md = report.markdown(plan, tmp_path, list(records.values()), {}, "python -m benchmarks.learning")
    table = md.split("## Headline")[1].split("\n\n")[2].splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    for line in table[2:]:
        row = dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        split, pre, post = row["split"], records[row["split"], cell.algo, 0], records[row["split"], cell.algo, steps]
        assert row["best learner"] == cell.algo and row["K × support"] == f"{steps} × {cell.eval.support_episodes}"
        assert row["before → after (mean [95 % CI])"] == f"{report._success(pre)} → {report._success(post)}"
        assert row["before → after (mean [95 % CI])"].startswith(f"{pre['success_mean']:.0%} [")
        assert row["IQM before → after"] == f"{pre['success_iqm']:.0%} → {post['success_iqm']:.0%}"
        # the oracle (which sees the task) before adapting, the best of the rest after K rounds: search
        assert row["oracle (k = 0)"] == report._success(records[split, "oracle", 0])
        assert (
            row["best baseline after K (mean [95 % CI])"]
            == f"search {report._success(records[split, 'search', steps])}"
        )
    assert [line.split("|")[2].strip() for line in table[2:]] == ["test", "ood"]
    full = md.split("## Every algorithm and baseline")[1].split("\n\n")[2].splitlines()
    (row,) = [line for line in full if "| point | maml | ood | sb3 |" in line]
    r = records["ood", "sb3", 1]
    assert f"| {report._success(r)} (IQM {r['success_iqm']:.0%}) |" in row and "| 1 × 2 |" in row


GOOD = {
    "eval": {"n_tasks": 2, "steps": 1, "splits": ["test"], "baselines": ["scratch"]},
    "families": {"point": {"headline": "maml", "minutes": {"train": 1, "eval": 1}}},
    "cells": [{"family": "point", "algo": "maml", "seeds": [0]}],
}


def _with(path: str, value) -> dict:
    """``GOOD`` with the entry at dotted ``path`` (list indices as numbers) set to ``value``."""
    plan = json.loads(json.dumps(GOOD))
    *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]
    node = plan
    for k in parents:
        node = node[k]
    node[last] = value
    return plan


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (_with("eval.steps", 4), "eval.steps=4 is not allowed: expected at most 3"),
        (
            _with("eval.support_episodes", 21),
            "eval.support_episodes=21 is not allowed with steps=1: expected steps × support_episodes ≤ 20 "
            "(support episodes per task in all)",
        ),
        (_with("eval.splits", ["train"]), "eval.splits=['train'] is not allowed: expected a list of val, test, ood"),
        (_with("eval.splits", []), "eval.splits=[] is not allowed: expected one or more of val, test, ood"),
        (_with("eval.baselines", ["pearl"]), "eval.baselines=['pearl'] is not allowed"),
        (
            _with("eval.baselines", ["scratch", "search"]),
            "eval.baselines: search is not allowed without oracle (it searches with the oracle's policy)",
        ),
        (_with("eval.n_tasks", 0), "eval: n_tasks=0 is not allowed"),
        (_with("cells.0.algo", "multitask"), "cells[0].algo='multitask' is not allowed"),
        (_with("cells.0.family", "drawer"), "cells[0].family='drawer' is not allowed"),
        (_with("cells.0.seeds", [0, 0]), "cells[0].seeds=[0, 0] is not allowed"),
        (_with("cells.0.train", {"inner_lrr": 1}), "cells[0].train: unknown key 'inner_lrr'"),
        (_with("cells.0.train", {"seed": 3}), "cells[0].train.seed is not allowed here"),
        (_with("cells.0.colour", "red"), "cells[0].colour is not a key here"),
        (_with("families.point.train", {"iterations": 0}), "families.point.train: iterations=0 is not allowed"),
        (_with("families.point.headline", "reptile"), "families.point.headline='reptile' is not allowed"),
        (
            _with("families.point.baseline_settings", {"iterations": 5}),
            "families.point.baseline_settings: baseline setting 'iterations' is not allowed",
        ),
        (_with("families.point.minutes", {"train": 1}), "families.point.minutes.eval is missing"),
        (_with("cells", []), "cells=[] is not allowed"),
        (_with("notes", "none.md"), "notes='none.md' is not allowed: expected a Markdown file beside the plan"),
    ],
)
def test_a_bad_plan_exits_2_with_one_line_naming_the_field(tmp_path, capsys, plan, message):
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(plan))
    with pytest.raises(SystemExit) as e:
        main(["--plan", str(path), "--results", str(tmp_path / "results"), "--status"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "results").exists()


def test_a_missing_plan_file_exits_2_from_the_command_line(tmp_path):
    out = plan_cli("--plan", str(tmp_path / "none.yaml"), "--status")
    assert out.returncode == 2 and out.stderr.strip() == (
        f"python -m benchmarks.learning: error: plan {tmp_path / 'none.yaml'} does not exist"
    )


def test_a_cell_another_process_holds_is_skipped_not_run_twice(tmp_path):
    run = tmp_path / "results" / "smoke" / "point-maml-seed0"
    with cells.held(run) as mine:
        assert mine
        out = plan_cli("--plan", str(SMOKE), "--results", str(tmp_path / "results"), "--out", str(tmp_path / "docs"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "point-maml-seed0: another process is running it; skipped" in out.stdout + out.stderr
    assert not run.exists()
    with cells.held(run) as mine:  # the skipping process let go of nothing it did not hold
        assert mine
