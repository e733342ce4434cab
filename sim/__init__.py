"""Simulation glue: cocotb testbenches and the Verilator/Icarus runner."""
