"""Software half of lowbit: formats, integer IR, golden model, quantizers, packing, CLI."""
