"""Hardware half of lowbit: Amaranth components and Verilog emission."""
