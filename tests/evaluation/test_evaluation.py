"""The few-shot protocol and ``evaluate.py``: k = 0 is the unadapted policy, adaptation never sees evaluation
episodes, every method gets the same budget, the same seed gives the same eval.json, what it prints and plots says
what it measured, each checkpoint has its own folder, bad input exits 2 with one line."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.inner_loop import InnerLoop
from agents.policy import evaluate as act
from agents.policy import stack
from agents.rollout import collect
from envs.registry import make_family, parse_task_batch
from envs.sim import SimSettings
from envs.vec_env import TaskVecEnv
from evaluation.baselines import (
    SB3Baseline,
    baseline_config,
    multitask_method,
    oracle_method,
    scratch_method,
    search_method,
)
from evaluation.command import parse_settings, parser, title
from evaluation.outputs import header, table
from evaluation.protocol import AdaptedMethod, EvalConfig, adaptation_curve, evaluate_methods
from meta.config import TrainConfig
from meta.runs import load_run
from meta.trainer import train

ROOT = Path(__file__).resolve().parents[2]
EC = EvalConfig(n_tasks=3, steps=2, support_episodes=3, eval_episodes=5, seeds=(0,))
CPU = SimSettings()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "run"
    cfg = dataclasses.replace(
        TrainConfig(), family="point", meta_batch=3, envs_per_task=4, hidden=(16, 16), iterations=2, out=str(out)
    )
    return train(cfg)


def method(run: Path):
    cfg, learner, normalizer = load_run(run)
    return AdaptedMethod.of(cfg.algo, learner, normalizer)


def test_k0_is_the_unadapted_policy_and_later_steps_do_not_change_it(run):
    m, family = method(run), make_family("point")
    tasks = family.sample(0, EC.n_tasks, "test")
    with_steps = adaptation_curve(m, family, tasks, EC, 4, CPU)
    without = adaptation_curve(m, family, tasks, dataclasses.replace(EC, steps=0), 4, CPU)
    np.testing.assert_array_equal(with_steps["return"][0], without["return"][0])
    # and it is what θ itself scores on the same evaluation episodes
    env = TaskVecEnv(family, tasks, EC.eval_episodes, seed=4)
    first_seed = int(np.random.default_rng(4).integers(2**31, size=1)[0])
    noise = torch.Generator().manual_seed(4)
    module = m.adaptation.module
    direct = collect(env, module, stack(m.theta, EC.n_tasks), m.normalizer, family.episode_length, noise, first_seed)
    np.testing.assert_array_equal(without["return"][0], direct.stats["return"].numpy())
    assert with_steps["return"].shape == (3, 3)


def test_a_context_run_adapts_its_context_alone_and_its_baselines_every_parameter(tmp_path):
    cfg = dataclasses.replace(
        TrainConfig(), family="point", meta_batch=3, envs_per_task=4, hidden=(16, 16), iterations=1, context_dim=2
    )
    run = train(dataclasses.replace(cfg, out=str(tmp_path / "run")))
    family = make_family("point")
    tasks = family.sample(0, EC.n_tasks, "test")
    m = method(run)
    adapted = adaptation_curve(m, family, tasks, EC, 0, CPU)["adapted"]
    theta = stack(m.theta, EC.n_tasks)
    assert [k for k in theta if not torch.equal(adapted[k], theta[k])] == ["context"]
    for baseline in (scratch_method(cfg, family, 0), multitask_method(run, cfg, 1)):
        assert "context" not in baseline.theta
        assert baseline.adaptation.rates == dict.fromkeys(baseline.theta, cfg.inner_lr)
        adapted = adaptation_curve(baseline, family, tasks, EC, 0, CPU)["adapted"]
        assert all(not torch.equal(adapted[k], stack(baseline.theta, EC.n_tasks)[k]) for k in adapted)


def test_adaptation_never_sees_evaluation_episodes(run, monkeypatch):
    seen = []
    real = InnerLoop.adapt

    def spy(self, state, support):
        seen.append(support.obs.shape[2])  # episodes per task in the batch it adapts on
        return real(self, state, support)

    monkeypatch.setattr(InnerLoop, "adapt", spy)
    family = make_family("point")
    adaptation_curve(method(run), family, family.sample(0, EC.n_tasks, "test"), EC, 0, CPU)
    assert seen == [EC.support_episodes] * EC.steps  # one step per k, always on support episodes (3, never 5)


def test_every_method_gets_exactly_the_stated_budget(run):
    family = make_family("point")
    cfg = load_run(run)[0]
    methods = [method(run), scratch_method(cfg, family, 0), multitask_method(run, cfg, 2), SB3Baseline()]
    ec = dataclasses.replace(EC, n_tasks=2, steps=1)
    results = evaluate_methods(methods, family, ec, CPU)
    budget = ec.steps * ec.support_episodes * family.episode_length
    assert {m: r["adaptation_env_steps_per_task"] for m, r in results["methods"].items()} == {
        "maml": budget,
        "scratch": budget,
        "multitask": budget,
        "sb3": budget,
    }
    assert [row["k"] for row in results["methods"]["sb3"]["summary"]] == [0, 1]
    # the multitask policy was trained for the run's env steps (same iterations and rollout sizes)
    mt = load_run(run / "eval" / "multitask-2")[0]
    assert (mt.iterations, mt.meta_batch, mt.envs_per_task, mt.algo) == (
        2,
        cfg.meta_batch,
        cfg.envs_per_task,
        "multitask",
    )


def test_the_sb3_baseline_leaves_no_log_folders_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    family = make_family("point")
    ec = dataclasses.replace(EC, n_tasks=1, steps=1, support_episodes=1, eval_episodes=1)
    SB3Baseline().curve(family, family.sample(0, 1, "test"), ec, 0, CPU)
    assert list(tmp_path.glob("SB3-*")) == []


def test_the_oracle_baseline_sees_the_task_and_adapts_on_the_same_tasks(run):
    family = make_family("point")
    cfg = load_run(run)[0]
    oracle = oracle_method(run, cfg, 2)
    results = evaluate_methods([method(run), oracle], family, EC, CPU)
    assert oracle.family.obs_dim == family.obs_dim + len(family.params)
    assert oracle.theta["pi.0.weight"].shape[1] == oracle.family.obs_dim  # its policy takes the task too
    budget = EC.steps * EC.support_episodes * family.episode_length
    assert results["methods"]["oracle"]["adaptation_env_steps_per_task"] == budget
    assert len(results["methods"]["oracle"]["per_task"]["return"][0][0]) == EC.n_tasks
    # trained like the multitask baseline, for the run's budget, with the task in its observation
    trained = load_run(run / "eval" / "oracle-2")[0]
    assert (trained.algo, trained.task_in_obs, trained.iterations, trained.meta_batch) == (
        "multitask",
        True,
        2,
        cfg.meta_batch,
    )


def test_the_search_baseline_tells_the_oracles_policy_a_tried_candidate_and_never_changes_its_weights(run):
    family = make_family("point")
    cfg = load_run(run)[0]
    oracle, search = oracle_method(run, cfg, 2), search_method(run, cfg, 2)
    tasks = family.sample(0, EC.n_tasks, "test")
    # told a task's own parameters, the context network is the oracle's network on the oracle's observation
    obs = TaskVecEnv(oracle.family, tasks, 2, seed=0).reset(seed=0)
    told = stack({k: v for k, v in search.theta.items() if k != "context"}, EC.n_tasks)
    told["context"] = search.context(family, tasks)
    mean = act(search.module, told, search.normalizer(obs[..., : family.obs_dim]))[0]
    expected = act(oracle.adaptation.module, stack(oracle.theta, EC.n_tasks), oracle.normalizer(obs))[0]
    torch.testing.assert_close(mean, expected)
    ec = dataclasses.replace(EC, steps=1)
    curve = search.curve(family, tasks, ec, 3, CPU)
    assert curve["success"].shape == (2, EC.n_tasks)
    assert curve["adaptation_env_steps"] == ec.support_episodes * family.episode_length
    np.testing.assert_array_equal(search.curve(family, tasks, ec, 3, CPU)["return"], curve["return"])
    # after one round the policy is told one of that round's candidates: the parameters of tasks from the train split
    rng = np.random.default_rng(3)
    rng.integers(2**31)  # the seed of the k = 0 measurement
    candidates = search.context(family, family.sample(rng, EC.n_tasks * ec.support_episodes, "train"))
    found = curve["adapted"]["context"]
    for i, row in enumerate(candidates.reshape(EC.n_tasks, ec.support_episodes, -1)):
        assert any(torch.equal(found[i], c) for c in row), i
    assert all(torch.equal(search.theta[k], oracle.theta[k]) for k in oracle.theta if k != "vf.0.weight")


def test_a_cached_baseline_trained_with_another_config_is_refused_and_left_as_it_is(run):
    cfg = load_run(run)[0]
    multitask_method(run, cfg, 2)
    cached = run / "eval" / "multitask-2"
    before = {p: p.read_bytes() for p in cached.rglob("*") if p.is_file()}
    with pytest.raises(
        ValueError, match=r"multitask-2 was trained with hidden=\[16, 16\], but this run needs \[8, 8\]"
    ):
        multitask_method(run, dataclasses.replace(cfg, hidden=(8, 8)), 2)
    assert {p: p.read_bytes() for p in cached.rglob("*") if p.is_file()} == before


def test_a_trained_baseline_takes_its_own_ppo_settings_over_the_runs_but_not_its_budget(run):
    cfg = dataclasses.replace(load_run(run)[0], context_dim=2, bound_coef=1.0)
    oracle = baseline_config(cfg, "oracle", 7, {"log_std_init": -1, "outer_lr": 0.01})
    assert oracle == dataclasses.replace(
        cfg, algo="multitask", context_dim=0, iterations=7, task_in_obs=True, log_std_init=-1.0, outer_lr=0.01
    )
    assert baseline_config(cfg, "multitask", 7).task_in_obs is False
    # an in-context learner's critic is its PPO's over trials: its baselines' gradient steps take the linear fit
    in_context = TrainConfig(family="point", algo="rl2")
    assert in_context.resolved_critic == "value"
    assert baseline_config(in_context, "multitask", 7).resolved_critic == "linear"
    assert scratch_method(in_context, make_family("point"), 0).adaptation.critic == "linear"
    for key in ("iterations", "envs_per_task", "inner_lr", "hidden"):
        with pytest.raises(ValueError, match=f"^baseline setting '{key}' is not allowed: expected one of log_std_init"):
            baseline_config(cfg, "multitask", 7, {key: 1})
    # a whole number is an integer setting's int, as the command line gives it
    epochs = baseline_config(cfg, "multitask", 7, parse_settings(("epochs=1",))).epochs
    assert (epochs, type(epochs)) == (1, int)
    with pytest.raises(ValueError, match=r"^log_std_init=9.0 is not allowed: expected a number in \[-5, 2\]$"):
        baseline_config(cfg, "multitask", 7, {"log_std_init": 9.0})
    # a baseline cached without the settings is not taken for one with them
    multitask_method(run, load_run(run)[0], 2)
    with pytest.raises(ValueError, match=r"multitask-2 was trained with log_std_init=0.0, but this run needs -1.0"):
        multitask_method(run, load_run(run)[0], 2, {"log_std_init": -1})


def test_a_cached_baseline_copied_beside_another_run_of_the_same_config_serves_it(run, tmp_path):
    # how a new algorithm's cells reuse another algorithm's multitask runs: the config differs only in `out`
    cfg = load_run(run)[0]
    multitask_method(run, cfg, 2)
    other = tmp_path / "other"
    shutil.copytree(run / "eval" / "multitask-2", other / "eval" / "multitask-2")
    metrics = (other / "eval" / "multitask-2" / "metrics.csv").read_bytes()
    copied = multitask_method(other, cfg, 2)
    original = multitask_method(run, cfg, 2)
    assert all(torch.equal(copied.theta[k], original.theta[k]) for k in original.theta)
    assert (other / "eval" / "multitask-2" / "metrics.csv").read_bytes() == metrics  # loaded, not trained again


def evaluate(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "evaluate.py"), *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_the_same_seed_gives_the_same_eval_json(run, tmp_path):
    small = ["--tasks", "3", "--steps", "1", "--support-episodes", "2", "--eval-episodes", "2", "--seeds", "3"]
    for name in ("a", "b"):
        out = evaluate(str(run), *small, "--out", str(tmp_path / name), cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-2000:]
    a, b = (json.loads((tmp_path / n / "eval.json").read_text()) for n in ("a", "b"))
    for data in (a, b):  # wall-clock time is the one number a seed does not fix
        for m in data["methods"].values():
            assert set(m.pop("adaptation_seconds_per_task")) == {"support", "adapt"}
    assert a == b
    assert set(a["methods"]) == {"maml", "scratch"} and a["config"]["seeds"] == [3]
    assert len(a["methods"]["maml"]["within_trial"]) == 1 * 2  # one round of two support episodes
    names = {"eval.json", "eval.csv", "adaptation.png", "within_trial.png"}
    assert {p.name for p in (tmp_path / "a").iterdir()} == names


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--split", "train"], "invalid choice: 'train'"),
        (["--baselines", "pearl"], "invalid choice: 'pearl'"),
        (["--steps", "-1"], "steps=-1 is not allowed"),
        (["--out", "/proc/no-such-place/eval"], "is not writable"),
        (["--baseline-settings", "iterations=5"], "baseline setting 'iterations' is not allowed"),
        (["--baseline-settings", "epochs=1.5"], "epochs=1.5 is not allowed: expected a positive integer"),
        (
            ["--baseline-settings", "log_std_init"],
            "--baseline-settings 'log_std_init' is not allowed: expected KEY=NUMBER",
        ),
        (["--checkpoint", "iter_00007"], "--checkpoint iter_00007 is not allowed: expected one of latest, best"),
        (["--chekpoint", "best"], "unrecognized argument --chekpoint: did you mean --checkpoint?"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(run, tmp_path, args, message):
    before = sorted(p.name for p in run.iterdir())
    out = evaluate(str(run), *args, cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and message in out.stderr, out.stderr
    assert sorted(p.name for p in run.iterdir()) == before


def test_a_run_trained_on_another_version_of_its_family_exits_2_and_writes_nothing(run, tmp_path):
    old = tmp_path / "old"
    subprocess.run(["cp", "-r", str(run), str(old)], check=True)
    recorded = json.loads((old / "family.json").read_text())
    (old / "family.json").write_text(json.dumps({**recorded, "reward": "an older reward"}))
    before = sorted(p.name for p in old.rglob("*"))
    out = evaluate(str(old), cwd=tmp_path)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "trained on another version of the point family (its reward differs)" in out.stderr
    assert sorted(p.name for p in old.rglob("*")) == before


def test_a_folder_without_a_checkpoint_exits_2(tmp_path):
    (tmp_path / "notarun").mkdir()
    out = evaluate(str(tmp_path / "notarun"), cwd=tmp_path)
    assert out.returncode == 2 and "not a run folder" in out.stderr


def test_a_run_folder_that_does_not_exist_is_said_so(tmp_path):
    out = evaluate("runs/nope", cwd=tmp_path)
    assert (out.returncode, out.stderr) == (2, "evaluate.py: error: runs/nope does not exist\n")


def _flip_tensor_bytes(path: Path) -> None:
    """Change bytes inside the largest tensor's data, which torch.load alone would load without a complaint."""
    import zipfile

    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        largest = max(archive.infolist(), key=lambda i: i.file_size)
        start = data.find(archive.read(largest.filename))
    data[start + largest.file_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: p.write_text("hello\n"), "its bytes are neither a torch.save archive nor a pickle"),
        (_flip_tensor_bytes, "are not those written (their checksum differs)"),
    ],
)
def test_a_damaged_checkpoint_names_the_checkpoints_to_try_instead(run, tmp_path, damage, reason):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.copy(copy / "checkpoints" / "latest.pt", copy / "checkpoints" / "iter_00002.pt")
    damage(copy / "checkpoints" / "latest.pt")
    out = evaluate(str(copy), cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith(
        f"evaluate.py: error: {copy}/checkpoints/latest.pt is not a robometa checkpoint or is damaged: "
    )
    assert reason in out.stderr
    assert out.stderr.endswith("; try --checkpoint best or iter_00002\n")


@pytest.fixture(scope="module")
def evaluated_best(run, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A copy of the run that keeps an iter_00002 checkpoint too, after ``evaluate.py --checkpoint best``."""
    copy = tmp_path_factory.mktemp("best") / "run"
    shutil.copytree(run, copy)
    shutil.copy(copy / "checkpoints" / "latest.pt", copy / "checkpoints" / "iter_00002.pt")
    small = ["--tasks", "2", "--steps", "1", "--support-episodes", "1", "--eval-episodes", "1"]
    return copy, evaluate(str(copy), "--checkpoint", "best", *small, cwd=copy.parent)


def test_each_checkpoint_is_evaluated_into_its_own_folder(evaluated_best):
    copy, out = evaluated_best
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads((copy / "eval" / "test-best" / "eval.json").read_text())["checkpoint"] == "best"
    assert not (copy / "eval" / "test").exists()  # latest's results are never overwritten by best's
    small = ["--tasks", "2", "--steps", "0", "--eval-episodes", "1", "--baselines"]
    out = evaluate(str(copy), "--checkpoint", "iter_00002", *small, cwd=copy.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (copy / "eval" / "test-iter_00002" / "eval.json").is_file()


def test_progress_counts_method_by_seed_evaluations(evaluated_best):
    _, out = evaluated_best
    assert re.search(r"evaluate point test: 100%\|.*\| 2/2 method × seed \[", out.stderr), out.stderr
    assert "seed/s" not in out.stderr


def test_the_table_explains_k_and_shows_the_mean_with_its_ci_before_the_iqm(run):
    cfg = load_run(run)[0]
    results = evaluate_methods([method(run)], make_family("point"), EC, CPU)
    lines = table({**header(run, "latest", EC, cfg), **results}).splitlines()
    assert lines[0] == (
        "k: rounds of adaptation, each from 3 fresh support episodes per task (k = 0: before adapting); "
        "mean over 3 tasks × 1 seed [95 % CI], then the IQM"
    )
    assert lines[1].split() == "method k success: mean [95% CI] IQM return: mean [95% CI] IQM".split()
    for line, row in zip(lines[2:], results["methods"]["maml"]["summary"], strict=True):
        words = re.sub(r"[\[\],%]", " ", line).split()
        suc, ret = row["success"], row["return"]
        expected = [100 * suc[k] for k in ("mean", "mean_ci_low", "mean_ci_high", "iqm")]
        expected += [ret[k] for k in ("mean", "mean_ci_low", "mean_ci_high", "iqm")]
        assert words[:2] == ["maml", str(row["k"])]
        np.testing.assert_allclose([float(w) for w in words[2:]], expected, atol=0.06)


def test_plot_titles_say_tasks_and_seeds_plainly(run):
    cfg = load_run(run)[0]
    assert title(cfg, EvalConfig(n_tasks=20), "latest") == "point (maml) on test: 20 tasks × 1 seed"
    ec = EvalConfig(split="val", n_tasks=5, seeds=(0, 1, 2))
    assert title(cfg, ec, "best") == "point (maml, checkpoint best) on val: 5 tasks × 3 seeds"


def test_help_shows_every_options_default(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")
    text = parser().format_help()
    options = re.split(r"\n(?=  -)", text.split("\noptions:\n")[1])  # one entry per option, wrapped lines and all
    assert len(options) > 15
    for option in options:
        if not option.lstrip().startswith("-h,"):
            assert "default" in option, option
    for shown in ("(default: test)", "(default: 0)", "(default: latest)", "(default: scratch)", "(default: none)"):
        assert shown in text


def test_evaluation_logs_mujocos_warnings_in_the_run_folder(run, tmp_path, monkeypatch):
    import mujoco

    import evaluation.command

    seen = []
    evaluate_all = evaluation.command.evaluate_methods

    def spy(*args, **kw):
        seen.append(mujoco.MjLogConfig.get().logfile)
        return evaluate_all(*args, **kw)

    monkeypatch.setattr(evaluation.command, "evaluate_methods", spy)
    small = ["--tasks", "1", "--steps", "0", "--eval-episodes", "1", "--baselines", "--out", str(tmp_path / "o")]
    assert evaluation.command.main([str(run), *small]) == 0
    assert seen == [str((run / "MUJOCO_LOG.TXT").absolute())]
    assert mujoco.MjLogConfig.get().logfile != seen[0]


def test_export_sb3_writes_the_adapted_policy_that_ppo_load_opens(run, tmp_path):
    from stable_baselines3 import PPO

    from agents.policy import mean_action
    from envs.task_env import TaskEnv

    family = make_family("point")
    batch = family.sample(5, 1, "test")
    (tmp_path / "task.json").write_text(batch.to_json())
    args = ["--task", "task.json", "--export-sb3", "adapted.zip", "--steps", "2", "--support-episodes", "3"]
    out = evaluate(str(run), *args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    model = PPO.load(tmp_path / "adapted.zip")
    # the same protocol, seed and task give the same adapted parameters here
    ec = dataclasses.replace(EvalConfig(), steps=2, support_episodes=3)
    m = method(run)
    adapted = {
        k: v[0]
        for k, v in adaptation_curve(m, family, parse_task_batch(batch.to_json()), ec, 0, CPU)["adapted"].items()
    }
    assert not all(torch.equal(adapted[k], m.theta[k]) for k in adapted)  # adaptation changed the policy
    env = TaskEnv(family, batch.tasks[0])
    obs, _ = env.reset(seed=0)
    sb3_mean = model.policy.get_distribution(model.policy.obs_to_tensor(obs)[0]).distribution.mean
    np.testing.assert_allclose(sb3_mean.detach().numpy()[0], mean_action(adapted, m.normalizer, obs), atol=1e-5)
    model.set_env(env)
    model.learn(64)
    assert model.num_timesteps > 0


def test_video_only_writes_an_mp4_of_before_and_after_that_decodes_to_one_frame_per_step(run, tmp_path):
    import imageio.v3 as iio

    args = ["--tasks", "2", "--steps", "1", "--support-episodes", "2", "--video-only", "--out", str(tmp_path / "v")]
    out = evaluate(str(run), *args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    frames = iio.imread(tmp_path / "v" / "adaptation.mp4")
    assert frames.shape[0] == make_family("point").episode_length
    assert frames.shape[1] > frames.shape[2] / 2  # two task rows of two tiles (before | after)
    assert not (tmp_path / "v" / "eval.json").exists()  # --video-only skips the metrics


def test_val_split_evaluates_tasks_of_the_test_region_that_no_test_draw_holds(run, tmp_path):
    small = ["--tasks", "3", "--steps", "1", "--support-episodes", "2", "--eval-episodes", "2", "--seeds", "0"]
    out = evaluate(str(run), "--split", "val", *small, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads((run / "eval" / "val" / "eval.json").read_text())
    family = make_family("point")
    val = [t for t in data["tasks"]["0"]["tasks"]]
    assert all(family.in_split(t, "test") for t in val)
    assert not {json.dumps(t) for t in val} & {json.dumps(t) for t in family.sample(0, 3, "test").tasks}


def test_an_existing_run_folder_of_the_results_matrix_still_loads():
    cfg, learner, _ = load_run(ROOT / "results" / "headline" / "point-maml-seed0")
    assert (cfg.family, cfg.algo, cfg.seed) == ("point", "maml", 0) and learner.theta


def test_evaluation_steps_every_world_in_the_runs_engine(run, monkeypatch):
    import evaluation.protocol as protocol

    engines = []

    class Recording(TaskVecEnv):
        def __init__(self, family, tasks, envs_per_task, sim, seed):
            engines.append(sim)
            super().__init__(family, tasks, envs_per_task, SimSettings(), seed)

    monkeypatch.setattr(protocol, "TaskVecEnv", Recording)
    warp = SimSettings("warp", "cpu")
    family = make_family("point")
    evaluate_methods([method(run)], family, dataclasses.replace(EC, steps=1), warp)
    assert engines == [warp, warp]  # support and evaluation envs


def test_a_run_on_an_engine_this_machine_lacks_exits_2_with_one_line_saying_why(run, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    pytest.importorskip("mujoco_warp")
    gpu_run = tmp_path / "gpu"
    shutil.copytree(run, gpu_run)
    for name in ("config.yaml",):
        text = (
            (gpu_run / name).read_text().replace("backend: cpu", "backend: warp").replace("device: cpu", "device: cuda")
        )
        (gpu_run / name).write_text(text)
    state = torch.load(gpu_run / "checkpoints" / "latest.pt", weights_only=True)
    state["config"] = {**state["config"], "backend": "warp", "device": "cuda"}
    torch.save(state, gpu_run / "checkpoints" / "latest.pt")
    before = sorted(p.name for p in gpu_run.rglob("*"))
    out = evaluate(str(gpu_run), cwd=tmp_path)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "trained on backend='warp', device='cuda', which this machine cannot run" in out.stderr
    assert out.stderr.strip().endswith("evaluate it on the CPU engine with --backend cpu")
    assert sorted(p.name for p in gpu_run.rglob("*")) == before
