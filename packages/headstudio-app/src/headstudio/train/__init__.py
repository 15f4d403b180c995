"""The training wing: what makes an avatar (config, sampling, guidance, regularisation, the
photo fit and its losses, the training loop and its checkpoints)."""
