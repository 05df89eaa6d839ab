"""Kernel backends: ``reference`` (pure NumPy) and ``cpu`` (compiled). See docs/architecture.md."""
