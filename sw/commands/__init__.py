"""Subcommands of the lowbit CLI, one module each."""
