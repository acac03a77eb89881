"""``benchmarks.memory``: an rl2 run's success per episode with its memory carried across a trial and with every
episode started from an empty memory."""

from __future__ import annotations

import dataclasses

import pytest

from benchmarks.memory import main, per_episode
from meta.config import TrainConfig
from meta.trainer import train


def tiny_run(tmp_path, algo: str):
    cfg = TrainConfig(family="point", algo=algo, meta_batch=2, envs_per_task=2, hidden=(16, 16), iterations=1)
    return train(dataclasses.replace(cfg, trial_episodes=2, out=str(tmp_path / algo)))


def test_carried_and_fresh_memories_share_their_first_episode(tmp_path):
    run = str(tiny_run(tmp_path, "rl2"))
    curves = per_episode(run, "train", tasks=6, episodes=3, worlds=2, seed=3)
    carried, fresh = curves["carried"], curves["fresh"]
    assert [len(v) for c in curves.values() for v in c.values()] == [3, 3, 3, 3]
    # the same reset, noise and empty memory; the later episodes start from other memories and resets
    assert carried["return"][0] == fresh["return"][0]
    assert carried["return"][1:] != fresh["return"][1:]
    assert all(0.0 <= v <= 1.0 for c in curves.values() for v in c["success"])


def test_a_run_without_a_memory_or_a_bad_count_is_refused_in_one_line(tmp_path, capsys):
    run = str(tiny_run(tmp_path, "context"))
    with pytest.raises(SystemExit) as exit_info:
        main([run])
    assert exit_info.value.code == 2
    assert "algo='context': expected an rl2 run" in capsys.readouterr().err
    with pytest.raises(ValueError, match="tasks=0 is not allowed"):
        per_episode(run, "train", tasks=0, episodes=2, worlds=1, seed=0)
