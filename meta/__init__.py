"""Meta-RL training: the run configuration, checkpoints and the MAML/FOMAML/Meta-SGD/Reptile outer loops."""
