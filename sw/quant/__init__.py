"""Quantizers: float32 torch models → integer IR networks."""
