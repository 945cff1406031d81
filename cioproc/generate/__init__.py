"""Synthetic mParticle data (`cioproc generate`) and writing it to the input topics (`cioproc produce`)."""

from cioproc.generate.synthetic import DEFAULT_NOW_MS, INPUT_ROLES, Record, Summary, generate

__all__ = ["DEFAULT_NOW_MS", "INPUT_ROLES", "Record", "Summary", "generate"]
