"""Interventions on the attention probabilities inside the model, and their registry."""
