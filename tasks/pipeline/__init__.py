"""Orchestration pieces: the run plan, one batch, task runners and the Prefect task wrappers."""
