"""lowbit: low-bit integer neural-network accelerators for FPGAs."""

__version__ = "0.1.0"
