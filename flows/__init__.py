"""Prefect flows: they only orchestrate (load, map over batches, persist, render)."""
