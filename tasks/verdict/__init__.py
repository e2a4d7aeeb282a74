"""Judge: evidence per example, verdicts per slice, and the gate."""
