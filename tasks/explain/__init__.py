"""Explanation methods: the shared model passes, the registry and one module per method family."""
