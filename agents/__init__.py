"""Policies, rollouts, advantages and the PPO inner loop, batched over the tasks of a meta-batch."""
