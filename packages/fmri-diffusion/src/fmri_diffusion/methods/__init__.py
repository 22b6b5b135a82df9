"""Reconstruction methods this package registers (entry points in its pyproject.toml)."""
