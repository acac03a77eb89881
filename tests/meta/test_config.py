"""TrainConfig validation, its dict/YAML forms, and the train.py command line built from its fields."""

from __future__ import annotations

import dataclasses
import json

import pytest

from meta.config import ALGOS, Resume, TrainConfig, from_dict, load_yaml, parse_args, save_yaml, to_dict
from meta.flags import field_docs


def _exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run parse_args expecting an argparse error: one line on stderr and no usage (that is for --help); return its
    message (without 'train.py: error: ')."""
    with pytest.raises(SystemExit) as e:
        parse_args(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("train.py: error: ")
    return err.strip().removeprefix("train.py: error: ")


def test_defaults_are_valid_and_match_the_documented_values() -> None:
    cfg = TrainConfig()
    assert (cfg.family, cfg.algo, cfg.meta_batch, cfg.envs_per_task, cfg.inner_steps) == ("door", "maml", 10, 8, 1)
    assert (cfg.inner_lr, cfg.outer_lr, cfg.reptile_epsilon, cfg.iterations, cfg.seed) == (0.1, 0.003, 0.5, 300, 0)
    assert (cfg.backend, cfg.device, cfg.hidden, cfg.normalize_obs, cfg.checkpoint_every, cfg.out) == (
        "cpu",
        "cpu",
        (64, 64),
        True,
        50,
        None,
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"algo": "sgd"},
            "algo='sgd' is not allowed: expected one of maml, fomaml, metasgd, reptile, rl2, context, multitask",
        ),
        ({"family": "maze"}, "family='maze' is not allowed: expected one of grasp, terrain, door, point, cheetah"),
        ({"backend": "jax"}, "backend='jax' is not allowed: expected one of cpu, warp"),
        ({"critic": "gae"}, "critic='gae' is not allowed: expected one of value, linear"),
        ({"device": "tpu", "backend": "warp"}, "device='tpu' is not allowed: expected one of cpu, cuda"),
        ({"device": "cuda"}, "device='cuda' is not allowed with backend='cpu': use backend='warp' for a GPU"),
        ({"meta_batch": 0}, "meta_batch=0 is not allowed: expected a positive integer"),
        ({"envs_per_task": -1}, "envs_per_task=-1 is not allowed: expected a positive integer"),
        ({"inner_steps": 0}, "inner_steps=0 is not allowed: expected a positive integer"),
        ({"iterations": 2.5}, "iterations=2.5 is not allowed: expected a positive integer"),
        ({"checkpoint_every": True}, "checkpoint_every=True is not allowed: expected a positive integer"),
        ({"seed": -1}, "seed=-1 is not allowed: expected an integer ≥ 0"),
        ({"hidden": (64, 0)}, "hidden=(64, 0) is not allowed: expected one or more positive integers"),
        ({"hidden": ()}, "hidden=() is not allowed: expected one or more positive integers"),
        ({"inner_lr": 0.0}, "inner_lr=0.0 is not allowed: expected a finite number > 0"),
        ({"context_dim": -1}, "context_dim=-1 is not allowed: expected an integer ≥ 0"),
        (
            {"context_dim": 4, "algo": "reptile"},
            "context_dim=4 is not allowed with algo='reptile': use maml, fomaml or metasgd",
        ),
        ({"context_lr": float("inf")}, "context_lr=inf is not allowed: expected a finite number > 0"),
        ({"outer_lr": -1e-3}, "outer_lr=-0.001 is not allowed: expected a finite number > 0"),
        ({"reptile_epsilon": float("nan")}, "reptile_epsilon=nan is not allowed: expected a finite number > 0"),
        ({"gamma": 0.0}, "gamma=0.0 is not allowed: expected a number in (0, 1]"),
        ({"gamma": 1.01}, "gamma=1.01 is not allowed: expected a number in (0, 1]"),
        ({"gae_lambda": -0.1}, "gae_lambda=-0.1 is not allowed: expected a number in [0, 1]"),
        ({"clip": 0}, "clip=0 is not allowed: expected a finite number > 0"),
        ({"vf_coef": -0.5}, "vf_coef=-0.5 is not allowed: expected a finite number ≥ 0"),
        ({"ent_coef": -0.01}, "ent_coef=-0.01 is not allowed: expected a finite number ≥ 0"),
        ({"bound_coef": -1.0}, "bound_coef=-1.0 is not allowed: expected a finite number ≥ 0"),
        ({"log_std_init": 3.0}, "log_std_init=3.0 is not allowed: expected a number in [-5, 2]"),
        ({"max_grad_norm": 0.0}, "max_grad_norm=0.0 is not allowed: expected a number > 0"),
        ({"normalize_obs": 1}, "normalize_obs=1 is not allowed: expected true or false"),
        ({"out": ""}, "out='' is not allowed: expected a folder path or nothing"),
    ],
)
def test_each_bad_value_is_refused_with_a_one_line_message_naming_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as e:
        TrainConfig(**kwargs)
    assert str(e.value) == message


def test_edge_values_are_allowed_and_numbers_become_floats() -> None:
    cfg = TrainConfig(gamma=1, gae_lambda=0, ent_coef=0, vf_coef=0, max_grad_norm=float("inf"), hidden=[8])
    assert cfg.gamma == 1.0 and isinstance(cfg.gamma, float)
    assert cfg.hidden == (8,)
    assert TrainConfig(backend="warp", device="cuda").device == "cuda"


def test_field_docs_gives_a_docstring_for_every_field() -> None:
    docs = field_docs(TrainConfig)
    assert list(docs) == [f.name for f in dataclasses.fields(TrainConfig)]
    assert all(text and "\n" not in text for text in docs.values())
    assert docs["meta_batch"] == "tasks per meta-iteration"


def test_to_dict_is_json_safe_and_from_dict_round_trips() -> None:
    cfg = TrainConfig(algo="reptile", hidden=(32, 16), out="runs/x", normalize_obs=False)
    d = to_dict(cfg)
    assert d["hidden"] == [32, 16]
    assert from_dict(json.loads(json.dumps(d)), where="test") == cfg
    assert from_dict({}, where="test") == TrainConfig()


def test_save_yaml_then_load_yaml_round_trips(tmp_path) -> None:
    cfg = TrainConfig(outer_lr=1e-5, hidden=(128,), family="point")
    save_yaml(cfg, tmp_path / "config.yaml")
    assert from_dict(load_yaml(tmp_path / "config.yaml"), where="config.yaml") == cfg


@pytest.mark.parametrize(
    ("d", "message"),
    [
        ({"lr": 0.1}, "config.yaml: unknown key 'lr': expected one of family, algo, meta_batch,"),
        ({"meta_batch": "4"}, "config.yaml: meta_batch must be an integer, not str '4'"),
        ({"inner_lr": "fast"}, "config.yaml: inner_lr must be a number, not str 'fast'"),
        ({"hidden": 64}, "config.yaml: hidden must be a list of integers, not int 64"),
        ({"normalize_obs": "yes please"}, "config.yaml: normalize_obs must be true or false, not str 'yes please'"),
        (
            {"algo": "sgd"},
            "config.yaml: algo='sgd' is not allowed: "
            "expected one of maml, fomaml, metasgd, reptile, rl2, context, multitask",
        ),
    ],
)
def test_from_dict_refuses_unknown_keys_and_wrong_types_naming_the_source(d: dict, message: str) -> None:
    with pytest.raises(ValueError) as e:
        from_dict(d, where="config.yaml")
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)


def test_load_yaml_reads_exponent_floats_as_numbers(tmp_path) -> None:
    (tmp_path / "c.yaml").write_text("outer_lr: 1e-3\ninner_lr: 5E-2\nhidden: [32, 32]\n")
    d = load_yaml(tmp_path / "c.yaml")
    assert d == {"outer_lr": 0.001, "inner_lr": 0.05, "hidden": [32, 32]}
    assert from_dict(d, where="c.yaml").hidden == (32, 32)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "does not exist"),
        ("algo: [maml\n", "is not valid YAML"),
        ("- maml\n- reptile\n", "must hold a mapping of option: value, not a list"),
    ],
)
def test_load_yaml_refuses_missing_broken_and_non_mapping_files(tmp_path, text: str | None, message: str) -> None:
    path = tmp_path / "c.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ValueError) as e:
        load_yaml(path)
    assert message in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)


def test_flags_map_to_fields() -> None:
    cfg = parse_args(
        ["--meta-batch", "4", "--hidden", "32", "32", "--no-normalize-obs", "--inner-lr", "0.05", "--algo", "fomaml"]
    )
    assert isinstance(cfg, TrainConfig)
    assert (cfg.meta_batch, cfg.hidden, cfg.normalize_obs) == (4, (32, 32), False)
    assert (cfg.inner_lr, cfg.algo) == (0.05, "fomaml")
    assert parse_args([]) == TrainConfig()
    assert parse_args(["--out", "runs/a", "--gae-lambda", "0.9"]).out == "runs/a"


def test_help_of_each_flag_is_the_field_docstring_with_its_default(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # one line per flag, so a docstring is not wrapped mid-phrase
    with pytest.raises(SystemExit) as e:
        parse_args(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.strip().startswith("--inner-lr"))
    assert "inner-loop step size (Meta-SGD's initial per-parameter step size) (default: 0.1)" in line
    assert "--normalize-obs, --no-normalize-obs" in out
    assert "--hidden N [N ...]" in out and "(default: 64 64)" in out


def test_config_file_values_are_used_and_explicit_flags_override_them(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("algo: sgd\nmeta_batch: 4\nhidden: [16]\ninner_lr: 1e-2\n")
    # algo: sgd in the file is never used, so it is not an error.
    cfg = parse_args(["--config", str(path), "--algo", "reptile", "--hidden", "8", "8"])
    assert (cfg.algo, cfg.meta_batch, cfg.hidden, cfg.inner_lr, cfg.outer_lr) == ("reptile", 4, (8, 8), 0.01, 0.003)


def test_unknown_yaml_key_exits_2_with_a_one_line_message(tmp_path, capsys) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("lr: 0.1\n")
    message = _exit_2(capsys, ["--config", str(path)])
    assert message.startswith(f"{path}: unknown key 'lr': expected one of family, algo,")


def test_missing_config_file_exits_2(tmp_path, capsys) -> None:
    assert "does not exist" in _exit_2(capsys, ["--config", str(tmp_path / "none.yaml")])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--algo", "sgd"],
            "algo='sgd' is not allowed: expected one of maml, fomaml, metasgd, reptile, rl2, context, multitask",
        ),
        (["--meta-batch", "0"], "meta_batch=0 is not allowed: expected a positive integer"),
        (["--device", "cuda"], "device='cuda' is not allowed with backend='cpu': use backend='warp' for a GPU"),
        (["--gamma", "2"], "gamma=2.0 is not allowed: expected a number in (0, 1]"),
    ],
)
def test_invalid_flag_values_exit_2_naming_the_field(capsys, argv: list[str], message: str) -> None:
    assert _exit_2(capsys, argv) == message


def test_non_numeric_flag_exits_2(capsys) -> None:
    assert "--meta-batch" in _exit_2(capsys, ["--meta-batch", "many"])


def test_resume_with_another_flag_exits_2(tmp_path, capsys) -> None:
    message = _exit_2(capsys, ["--resume", str(tmp_path), "--algo", "maml"])
    assert message == (
        "--resume continues a run with its saved config: drop --algo (--iterations N is the one flag it takes, to "
        "train longer)"
    )
    assert "drop --config" in _exit_2(capsys, ["--resume", str(tmp_path), "--config", "x.yaml"])
    assert "drop --seed" in _exit_2(capsys, ["--resume", str(tmp_path), "--iterations", "9", "--seed", "1"])


def test_resume_alone_returns_the_run_folder(tmp_path) -> None:
    # The trainer reads the run's own config.yaml.
    assert parse_args(["--resume", str(tmp_path)]) == Resume(str(tmp_path))


def test_resume_takes_iterations_as_its_one_flag_to_train_longer(tmp_path, capsys) -> None:
    assert parse_args(["--resume", str(tmp_path), "--iterations", "500"]) == Resume(str(tmp_path), 500)
    assert _exit_2(capsys, ["--resume", str(tmp_path), "--iterations", "0"]) == (
        "iterations=0 is not allowed: expected a positive integer"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--iteration", "5"], "unrecognized argument --iteration: did you mean --iterations?"),
        (["--meta-bach", "3"], "unrecognized argument --meta-bach: did you mean --meta-batch?"),
        (
            ["--family", "point", "--inner-lr=0.1", "--outer_lr", "0.1"],
            "unrecognized argument --outer_lr: did you mean --outer-lr?",
        ),
        (["--frobnicate"], "unrecognized argument --frobnicate: train.py --help lists the options"),
        (["point"], "unrecognized arguments: point"),
    ],
)
def test_a_misspelled_flag_is_one_line_naming_the_nearest_flag(capsys, argv: list[str], message: str) -> None:
    assert _exit_2(capsys, argv) == message


def test_a_misspelled_yaml_key_is_answered_with_the_nearest_key(tmp_path, capsys) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("iteration: 5\n")
    assert _exit_2(capsys, ["--config", str(path)]) == f"{path}: unknown key 'iteration': did you mean 'iterations'?"
    with pytest.raises(ValueError, match=r"^c.yaml: unknown key 'meta_bach': did you mean 'meta_batch'\?$"):
        from_dict({"meta_bach": 3}, where="c.yaml")


def test_help_says_what_the_progress_bar_shows(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "the time left at the pace so far" in out
    assert "mean return and success before adapting (θ's own episodes; rl2, context: each trial's first episode)" in out
    assert "rollout/pre_* and rollout/post_*" in out and "env steps simulated per second" in out
    assert "Ctrl-C stops a run at its last complete iteration" in out


def test_the_critic_defaults_to_the_linear_fit_for_gradient_learners_and_to_the_value_head_for_in_context_ones():
    assert {algo: TrainConfig(algo=algo).resolved_critic for algo in ALGOS} == {
        **dict.fromkeys(("maml", "fomaml", "metasgd", "reptile", "multitask"), "linear"),
        "rl2": "value",
        "context": "value",
    }
    assert dataclasses.replace(TrainConfig(), algo="rl2").resolved_critic == "value"  # unset, it follows the algo
    assert to_dict(TrainConfig(algo="rl2"))["critic"] == "value"  # a saved run records what it trained with
    unset = TrainConfig(algo="rl2")
    assert unset == TrainConfig(algo="rl2", critic="value") != TrainConfig(algo="rl2", critic="linear")
    told = TrainConfig(algo="context", critic="linear")
    assert from_dict(to_dict(told), "test").resolved_critic == "linear"
