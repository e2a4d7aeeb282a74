"""The classifier: the bundle the methods read, loading, per-family adapters, the attention hook and the presets."""
