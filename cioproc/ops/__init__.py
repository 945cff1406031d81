"""Operator commands: `cioproc check`, `cioproc status` and `cioproc inspect`."""
