"""The classifier: loading, per-family adapters, the attention hook and the embedded presets."""
