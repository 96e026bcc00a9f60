"""iterkd: distil programming skill from a teacher code LLM into a small student, verified by execution."""

__version__ = "0.1.0"
