"""The meta-training loop and ``train.py``: a complete run folder, exact resumption after SIGKILL, Ctrl-C and
SIGTERM, a run trained longer equal to one trained that long at once, what it says while training, and bad input
refused with exit code 2 and no file of the run changed."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from envs.registry import make_family
from meta import checkpoint
from meta.config import TrainConfig, from_dict, load_yaml, to_dict
from meta.runs import RunFolder, begin, check_config, mujoco_log, read_checkpoint
from meta.trainer import train

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--family", "point", "--meta-batch", "3", "--envs-per-task", "4", "--hidden", "16", "16"]


def tiny(tmp_path: Path, **kw) -> TrainConfig:
    return dataclasses.replace(
        TrainConfig(), family="point", meta_batch=3, envs_per_task=4, hidden=(16, 16), out=str(tmp_path / "run"), **kw
    )


def run_train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def rows(run: Path) -> list[dict]:
    with (run / "metrics.csv").open() as f:
        return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in csv.DictReader(f)]


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


@pytest.mark.parametrize("algo", ["maml", "fomaml", "metasgd", "reptile", "rl2", "context"])
def test_training_writes_a_complete_run_folder(tmp_path, algo):
    run = train(tiny(tmp_path, algo=algo, iterations=3, checkpoint_every=2))
    assert from_dict(load_yaml(run / "config.yaml"), "config.yaml") == tiny(
        tmp_path, algo=algo, iterations=3, checkpoint_every=2
    )
    metrics = rows(run)
    assert [r["iteration"] for r in metrics] == ["1", "2", "3"]
    assert {"rollout/pre_return", "rollout/post_success"} <= metrics[0].keys()
    if algo in ("rl2", "context"):  # adapting is acting: no inner loop, PPO's own diagnostics
        assert {"outer/approx_kl", "outer/clip_fraction", "outer/reward_scale"} <= metrics[0].keys()
    else:
        assert {"inner/loss", "inner/approx_kl", "inner/clip_fraction"} <= metrics[0].keys()
    assert any(k.startswith("outer/") for k in metrics[0])
    assert {p.name for p in (run / "checkpoints").iterdir()} >= {"latest.pt", "best.pt", "iter_00002.pt"}
    assert len((run / "tasks.jsonl").read_text().splitlines()) == 3
    assert list((run / "tb").glob("events.out.tfevents.*"))
    state = checkpoint.load(run / "checkpoints" / "latest.pt")
    assert state["iteration"] == 3 and state["config"] == to_dict(from_dict(load_yaml(run / "config.yaml"), "c"))


@pytest.mark.parametrize("algo", ["maml", "rl2"])
def test_a_run_killed_mid_training_resumes_to_the_same_metrics(tmp_path, algo):
    extra = {"trial_episodes": 2} if algo == "rl2" else {}
    full = train(tiny(tmp_path / "a", iterations=12, algo=algo, **extra))
    killed = tmp_path / "b"
    flags = ["--algo", algo, *(["--trial-episodes", "2"] if extra else [])]
    args = [*TINY, *flags, "--iterations", "12", "--out", str(killed)]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and (not (killed / "metrics.csv").exists() or len(rows(killed)) < 4):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stopped_at = len(rows(killed))
    assert 4 <= stopped_at < 12, "the run was not killed mid-training"
    out = run_train("--resume", str(killed), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert rows(killed) == rows(full)
    a, b = (checkpoint.load(r / "checkpoints" / "latest.pt")["learner"]["theta"] for r in (full, killed))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("done")
    return train(tiny(tmp, iterations=2))


def test_resume_refuses_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "empty").mkdir()
    out = run_train("--resume", str(tmp_path / "empty"), cwd=tmp_path)
    assert out.returncode == 2 and "not a run folder (no config.yaml)" in out.stderr
    assert not list((tmp_path / "empty").iterdir())


def test_resume_of_a_folder_that_does_not_exist_says_so(tmp_path):
    out = run_train("--resume", "runs/nope", cwd=tmp_path)
    assert (out.returncode, out.stderr) == (2, "train.py: error: runs/nope does not exist\n")
    assert not (tmp_path / "runs").exists()


def _damage_truncated(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _damage_foreign(p: Path) -> None:
    torch.save({"weights": torch.zeros(3)}, p)


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['ROBOMETA_MARKER']}",))


def _damage_malicious(p: Path) -> None:
    with p.open("wb") as f:
        pickle.dump({"format": checkpoint.FORMAT, "payload": _RunsCode()}, f)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_damage_truncated, "is not a robometa checkpoint or is damaged"),
        (_damage_foreign, "is not a robometa checkpoint or is damaged"),
        (_damage_malicious, "is not a robometa checkpoint or is damaged"),
    ],
)
def test_resume_refuses_a_damaged_foreign_or_malicious_checkpoint(finished_run, tmp_path, monkeypatch, damage, message):
    run = tmp_path / "run"
    subprocess.run(["cp", "-r", str(finished_run), str(run)], check=True)
    marker = tmp_path / "code-ran"
    monkeypatch.setenv("ROBOMETA_MARKER", str(marker))
    damage(run / "checkpoints" / "latest.pt")
    before = digest(run)
    out = run_train("--resume", str(run), cwd=tmp_path)
    assert out.returncode == 2 and message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert digest(run) == before
    assert not marker.exists()


def test_resume_refuses_a_run_whose_family_changed_since_it_began(finished_run, tmp_path):
    run = tmp_path / "run"
    subprocess.run(["cp", "-r", str(finished_run), str(run)], check=True)
    recorded = json.loads((run / "family.json").read_text())
    assert recorded == json.loads(json.dumps(make_family("point").identity()))
    (run / "family.json").write_text(json.dumps({**recorded, "reward": "an older reward"}))
    before = digest(run)
    out = run_train("--resume", str(run), cwd=tmp_path)
    assert out.returncode == 2 and "trained on another version of the point family (its reward differs)" in out.stderr
    assert "continuing would train on another family; start a new run" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert digest(run) == before


def test_resuming_a_finished_run_changes_no_file(finished_run, tmp_path):
    run = tmp_path / "run"
    subprocess.run(["cp", "-r", str(finished_run), str(run)], check=True)
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("bound_coef: 0.0\n", ""))
    before = digest(run)  # a config saved before a field existed is not rewritten either
    assert train(None, resume=str(run)) == run
    assert digest(run) == before


def test_a_new_run_never_overwrites_an_existing_folder(finished_run, tmp_path):
    before = digest(finished_run)
    out = run_train(*TINY, "--iterations", "1", "--out", str(finished_run), cwd=tmp_path)
    assert out.returncode == 2 and "already holds files" in out.stderr
    assert digest(finished_run) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--algo", "sgd"], "algo='sgd' is not allowed"),
        (["--family", "drawer"], "family='drawer' is not allowed"),
        (["--backend", "tpu"], "backend='tpu' is not allowed"),
        (["--meta-batch", "0"], "meta_batch"),
        (["--inner-lr", "-1"], "inner_lr"),
    ],
)
def test_bad_options_exit_2_with_one_line_and_write_nothing(tmp_path, args, message):
    out = run_train(*args, "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert out.returncode == 2
    assert message in out.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "run").exists()


def test_a_config_file_with_an_unknown_key_exits_2(tmp_path):
    (tmp_path / "c.yaml").write_text("family: point\nlearning_rate: 0.1\n")
    out = run_train("--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert out.returncode == 2 and "unknown key 'learning_rate'" in out.stderr
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_written_before_a_config_field_existed_still_loads(tmp_path):
    run = train(tiny(tmp_path))
    state = checkpoint.load(run / "checkpoints" / "latest.pt")
    for newer in ("task_in_obs", "distributed", "workers", "worker_cpus", "ray_address"):
        del state["config"][newer]
    checkpoint.save(run / "checkpoints" / "latest.pt", state)
    cfg, loaded = read_checkpoint(run, "latest")
    assert cfg == tiny(tmp_path) and loaded["iteration"] == state["iteration"]


def test_a_run_saved_before_the_critic_existed_loads_with_the_value_critic_it_was_trained_with(tmp_path):
    import yaml

    run = train(tiny(tmp_path, critic="value"))
    state = checkpoint.load(run / "checkpoints" / "latest.pt")
    del state["config"]["critic"]
    checkpoint.save(run / "checkpoints" / "latest.pt", state)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    del saved["critic"]
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    cfg, _ = read_checkpoint(run, "latest")
    assert cfg.critic == "value" and TrainConfig().resolved_critic == "linear"


def theta(run: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(run / "checkpoints" / "latest.pt")["learner"]["theta"]


def test_the_oracle_baseline_trains_under_its_own_name(tmp_path, capsys):
    train(tiny(tmp_path, algo="multitask", task_in_obs=True, iterations=1))
    err = capsys.readouterr().err
    assert err.startswith(f"training point/oracle into {tmp_path / 'run'} (1 iterations;")
    assert "point/multitask" not in err


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """A run of 16 iterations trained at once, which stopped, resumed and lengthened runs must equal."""
    return train(tiny(tmp_path_factory.mktemp("reference"), iterations=16, checkpoint_every=4))


def test_training_names_its_run_folder_and_says_where_the_time_left_shows_before_the_bar(tmp_path):
    out = run_train(*TINY, "--iterations", "2", "--out", "run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stderr.splitlines()[0] == (
        "training point/maml into run (2 iterations; the time left shows on the bar once the first iterations ran, "
        "at their pace)"
    )
    number = r"-?\d+\.\d"
    assert re.search(
        rf"point/maml: 100%\|.*\| 2/2 iterations \[\d\d:\d\d elapsed, \d\d:\d\d left, before adapting: return "
        rf"{number} success \d+% \| after: return {number} success \d+% \| [\d,]+ env steps/s\]",
        out.stderr,
    ), out.stderr
    assert "post=" not in out.stderr and out.stdout == "run folder: run\n"


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_stops_at_a_whole_iteration_that_resumes_to_the_same_metrics(
    reference, tmp_path, signum, status
):
    run = tmp_path / "run"
    args = [*TINY, "--iterations", "16", "--checkpoint-every", "4", "--out", str(run)]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.time() + 120
    while time.time() < deadline and (not (run / "metrics.csv").exists() or len(rows(run)) < 3):
        time.sleep(0.02)
    proc.send_signal(signum)
    stdout, stderr = (b.decode() for b in proc.communicate(timeout=120))
    stopped = checkpoint.load(run / "checkpoints" / "latest.pt")["iteration"]
    assert 3 <= stopped < 16, "the run was not stopped mid-training"
    assert proc.returncode == status and stdout == ""
    assert "Traceback" not in stderr
    assert (
        stderr.splitlines()[-1] == f"stopped at iteration {stopped} of 16; resume with: python train.py --resume {run}"
    )
    # the folder ends at that iteration, whole: its records, its checkpoint, no temporary file
    assert len(rows(run)) == stopped and len((run / "tasks.jsonl").read_text().splitlines()) == stopped
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]

    out = run_train("--resume", str(run), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.fullmatch(
        rf"resuming point/maml in {run} at iteration {stopped} of 16 \(about \d+ s left at this run's pace so far; "
        r"updated on the bar\)",
        out.stderr.splitlines()[0],
    )
    assert rows(run) == rows(reference)
    assert (run / "tasks.jsonl").read_text() == (reference / "tasks.jsonl").read_text()
    a, b = theta(reference), theta(run)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_stopped_before_its_first_iteration_ended_resumes_from_the_start(reference, tmp_path):
    cfg = tiny(tmp_path, iterations=16, checkpoint_every=4)
    begin(RunFolder(tmp_path / "run"), cfg)  # what a stop during the first iteration leaves: no checkpoint yet
    assert train(None, resume=str(tmp_path / "run")) == tmp_path / "run"
    assert rows(tmp_path / "run") == rows(reference)


def test_a_run_trained_longer_equals_a_run_trained_that_long_at_once(reference, tmp_path):
    run = train(tiny(tmp_path, iterations=6, checkpoint_every=4))
    out = run_train("--resume", str(run), "--iterations", "16", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stderr.splitlines()[0].startswith(f"resuming point/maml in {run} at iteration 6 of 16 (about ")
    assert rows(run) == rows(reference)
    a, b = theta(reference), theta(run)
    assert all(torch.equal(a[k], b[k]) for k in a)
    cfg = from_dict(load_yaml(run / "config.yaml"), "config.yaml")
    assert cfg == tiny(tmp_path, iterations=16, checkpoint_every=4)
    # a checkpoint written before the run was lengthened saved the shorter target, and still loads with the run
    assert checkpoint.load(run / "checkpoints" / "iter_00004.pt")["config"]["iterations"] == 6
    assert read_checkpoint(run, "iter_00004")[0] == cfg
    # a cached baseline's folder is still told apart from one of another length
    with pytest.raises(ValueError, match="was trained with iterations=16, but this run needs 6"):
        check_config(run, dataclasses.replace(cfg, iterations=6), "this run needs", "delete the folder")


def test_resume_refuses_iterations_not_past_what_the_run_has_done(finished_run, tmp_path):
    before = digest(finished_run)
    out = run_train("--resume", str(finished_run), "--iterations", "2", cwd=tmp_path)
    assert (out.returncode, out.stderr) == (
        2,
        f"train.py: error: --iterations 2 is not allowed: {finished_run} has done 2 iterations; give more than 2 to "
        "train it longer\n",
    )
    assert digest(finished_run) == before


def test_resuming_a_complete_run_says_so_and_how_to_train_it_longer(finished_run, tmp_path):
    before = digest(finished_run)
    out = run_train("--resume", str(finished_run), cwd=tmp_path)
    assert (out.returncode, out.stdout, out.stderr) == (
        0,
        f"{finished_run} is complete (2/2 iterations); train it longer with --resume {finished_run} --iterations N\n",
        "",
    )
    assert digest(finished_run) == before


def test_mujoco_warnings_go_to_the_run_folder_not_the_current_folder(tmp_path, monkeypatch):
    import mujoco

    monkeypatch.chdir(tmp_path)
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    model = mujoco.MjModel.from_xml_string(
        "<mujoco><worldbody><body><freejoint/><geom size='.1'/></body></worldbody></mujoco>"
    )
    data = mujoco.MjData(model)
    before = mujoco.MjLogConfig.get().logfile
    with mujoco_log(folder):
        data.qvel[0] = float("nan")
        mujoco.mj_step(model, data)
    assert "Nan, Inf or huge value in QVEL" in folder.mujoco_log.read_text()
    assert mujoco.MjLogConfig.get().logfile == before
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()


def test_training_logs_mujocos_warnings_in_its_run_folder(tmp_path, monkeypatch):
    import mujoco

    import meta.trainer

    seen = []
    make_workers = meta.trainer.make_workers

    def spy(cfg: TrainConfig):
        seen.append(mujoco.MjLogConfig.get().logfile)
        return make_workers(cfg)

    monkeypatch.setattr(meta.trainer, "make_workers", spy)
    run = train(tiny(tmp_path, iterations=1))
    assert seen == [str((run / "MUJOCO_LOG.TXT").absolute())]


@pytest.mark.parametrize("algo", ["rl2", "context"])
def test_in_context_learners_train_on_mujoco_warp_as_on_the_cpu_engine(tmp_path, algo):
    pytest.importorskip("mujoco_warp")
    runs = {
        backend: train(tiny(tmp_path / backend, iterations=1, algo=algo, trial_episodes=2, backend=backend))
        for backend in ("cpu", "warp")
    }
    cpu, warp = (rows(runs[b])[0] for b in ("cpu", "warp"))
    for key in ("rollout/pre_return", "rollout/post_return", "outer/loss"):
        # Warp runs float32 physics: the same rollouts up to rounding, not bit for bit.
        assert float(warp[key]) == pytest.approx(float(cpu[key]), rel=1e-3, abs=1e-3), key
