"""Measuring adaptation: the few-shot protocol on held-out tasks, the baselines, statistics, plots, videos and the
hand-off of an adapted policy to Stable-Baselines3."""
