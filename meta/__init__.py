"""Meta-RL training: the run configuration, the outer loops (MAML, FOMAML, Meta-SGD, Reptile), the trainer, its run
folder and checkpoints, and Ray workers."""
