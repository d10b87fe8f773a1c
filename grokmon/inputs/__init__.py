"""Where data enters: the configuration and manifest, the checkpoints, the model, the probe data."""
