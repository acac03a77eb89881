"""SB3 export: the zip loads with plain ``PPO.load``, acts and values like robometa's policy, keeps training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from torch.func import functional_call

import envs
from agents.normalizer import ObsNormalizer
from agents.policy import ActorCritic, Params, init_params, mean_action
from envs.task_env import TaskEnv
from evaluation.sb3_export import export_sb3

TOL = 1e-5


def _task(family: str) -> dict:
    return envs.make_family(family).sample(0, 1, "train").tasks[0]


def _env_obs(family: str, task: dict, n: int) -> np.ndarray:
    """``[n, obs_dim]`` observations from real resets and random-action steps."""
    env = TaskEnv(family, task)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    out = []
    for i in range(n):
        out.append(obs)
        obs, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        if terminated or truncated or i % 7 == 6:  # several resets, so not every sample is mid-episode
            obs, _ = env.reset(seed=i)
    return np.stack(out).astype(np.float32)


def _policy(
    obs_dim: int, action_dim: int, hidden: tuple[int, ...], obs: np.ndarray, context_dim: int = 0
) -> tuple[Params, ObsNormalizer]:
    """Noisy parameters (non-zero biases, non-zero log-std and context) and a normalizer with non-trivial
    statistics."""
    g = torch.Generator().manual_seed(1)
    params = init_params(ActorCritic(obs_dim, action_dim, hidden, context_dim), seed=0)
    params = {k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in params.items()}
    norm = ObsNormalizer(obs_dim)
    # Real observations, shifted and spread per dimension: a mean and variance far from (0, 1), while the test
    # observations stay well inside the ±10 std clip that the fold leaves out.
    x = torch.as_tensor(obs, dtype=torch.float64)
    shift, scale = (
        torch.randn(obs_dim, generator=g, dtype=torch.float64),
        0.5 + torch.rand(obs_dim, dtype=torch.float64),
    )
    norm.update(x + shift + scale * torch.randn(x.shape, generator=g, dtype=torch.float64))
    return params, norm


@pytest.mark.parametrize(
    ("family", "hidden", "context_dim"),
    [("point", (32, 32), 0), ("door", (64, 64), 0), ("point", (16, 8, 16), 0), ("door", (32, 32), 4)],
)
def test_loaded_zip_matches_robometa_policy(tmp_path, family: str, hidden: tuple[int, ...], context_dim: int) -> None:
    task = _task(family)
    obs = _env_obs(family, task, 20)
    f = envs.make_family(family)
    params, norm = _policy(f.obs_dim, f.action_dim, hidden, obs, context_dim)
    path = tmp_path / "policy.zip"
    export_sb3(params, hidden, norm, family, task, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.zip"]  # no temporary file left behind

    model = PPO.load(path, device="cpu")
    obs_t = torch.as_tensor(obs)
    with torch.no_grad():
        sb3_mean = model.policy.get_distribution(obs_t).distribution.mean.numpy()
        sb3_value = model.policy.predict_values(obs_t).squeeze(-1).numpy()
        module = ActorCritic(f.obs_dim, f.action_dim, hidden, context_dim)
        mean, _, value = functional_call(module, params, (norm(obs_t),))
    ours = mean_action(params, norm, obs)  # a context is folded into the first layer, as in the export
    assert ours.shape == sb3_mean.shape == (20, f.action_dim)
    assert np.abs(mean.numpy() - ours).max() < TOL
    assert np.abs(sb3_mean - ours).max() < TOL
    for o, m in zip(obs, ours, strict=True):  # the one-observation form the lead uses
        np.testing.assert_allclose(mean_action(params, norm, o), m, atol=1e-6, rtol=0)
    np.testing.assert_allclose(model.policy.log_std.detach().numpy(), params["log_std"].numpy(), atol=0, rtol=0)
    assert np.abs(sb3_value - value.numpy()).max() < TOL
    # predict() clips to the action space: it equals the clipped mean.
    action, _ = model.predict(obs, deterministic=True)
    np.testing.assert_allclose(action, np.clip(ours, -1, 1), atol=TOL, rtol=0)


def test_disabled_normalizer_copies_weights_as_is(tmp_path) -> None:
    f = envs.make_family("point")
    params = init_params(ActorCritic(f.obs_dim, f.action_dim, (16, 16)), seed=3)
    params = {k: v + 0.1 for k, v in params.items()}
    model = export_sb3(
        params, (16, 16), ObsNormalizer(f.obs_dim, enabled=False), "point", _task("point"), tmp_path / "p.zip"
    )
    sd = model.policy.state_dict()
    assert torch.equal(sd["mlp_extractor.policy_net.0.weight"], params["pi.0.weight"])
    assert torch.equal(sd["mlp_extractor.value_net.0.bias"], params["vf.0.bias"])
    assert torch.equal(sd["action_net.weight"], params["pi.4.weight"])
    assert torch.equal(sd["value_net.bias"], params["vf.4.bias"])


def test_loaded_model_keeps_training(tmp_path) -> None:
    task = _task("point")
    f = envs.make_family("point")
    params, norm = _policy(f.obs_dim, f.action_dim, (32, 32), _env_obs("point", task, 20))
    path = tmp_path / "policy.zip"
    export_sb3(params, (32, 32), norm, "point", task, path)
    env = TaskEnv("point", task)
    # Keyword arguments to load override the saved (default) hyperparameters: a short rollout keeps this quick.
    model = PPO.load(path, env=env, device="cpu", n_steps=64, batch_size=32, n_epochs=2)
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.set_env(TaskEnv("point", task))
    model.learn(256)
    after = model.policy.state_dict()
    assert model.num_timesteps == 256
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(
    ("name", "match"), [("policy.pt", "must end in .zip"), ("missing/policy.zip", "does not exist")]
)
def test_bad_path_is_refused_and_nothing_written(tmp_path, name: str, match: str) -> None:
    f = envs.make_family("point")
    params = init_params(ActorCritic(f.obs_dim, f.action_dim, (16, 16)), seed=0)
    with pytest.raises(ValueError, match=match) as e:
        export_sb3(params, (16, 16), ObsNormalizer(f.obs_dim), "point", _task("point"), tmp_path / name)
    assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_mismatched_params_are_refused(tmp_path) -> None:
    f = envs.make_family("point")
    params = init_params(ActorCritic(f.obs_dim, f.action_dim, (16, 16)), seed=0)
    with pytest.raises(ValueError, match="expected"):
        export_sb3(params, (32, 32), ObsNormalizer(f.obs_dim), "point", _task("point"), tmp_path / "p.zip")
    assert list(tmp_path.iterdir()) == []
