"""The training wing: samplers of views and expressions, the training loop, guidance adapters,
regularisation, densification diagnostics, checkpoints and loading a trained avatar back."""
