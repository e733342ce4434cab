"""The simulation model of a network: what differs from the synthesized Verilog, and the check.

``lowbit build`` writes two netlists of one design (see :data:`MODELS`):

* ``lowbit_net.v``, the circuit for the FPGA, and
* ``lowbit_net_sim.v``, the same generator run with ``model="simulation"``, which Verilator
  runs several times faster. It differs in exactly two ways, both local:

  1. a general lane multiplier is Verilog ``*`` (one native multiply in Verilator's C++)
     instead of the radix-4 digit multiplier (muxes and adds it evaluates one by one). Before
     writing the model, :func:`check_lane_multipliers` simulates the digit multiplier on every
     pair of codes of every (weight, activation) format pair the network uses and requires
     ``w·x`` each time, so the two multipliers are the same function;
  2. the data registers of the MAC array's and the requantizer's pipelines load only behind a
     valid beat instead of on every cycle (Verilator then skips the arithmetic of layers that
     wait, most of the time in a folded network). Every stage's valid, first and last bits move
     exactly as in the synthesized circuit, and no register is read without its valid bit, so
     what leaves the top is the same. The test suite simulates both netlists with random gaps
     and stalls and requires both to equal the golden model; ``lowbit sim --model synthesis``
     runs the synthesized netlist itself.
"""

from __future__ import annotations

from functools import lru_cache

from typing import TYPE_CHECKING

from lowbit.sw.formats import IntFormat, parse_format
from lowbit.sw.specs import product_kind

from .arith import digit_multiply

if TYPE_CHECKING:
    from lowbit.sw.ir import Network

__all__ = ["MODELS", "check_model", "MODEL_DIFFERENCES", "check_lane_multipliers", "multiplier_pairs"]

# Which netlist a generator emits: "synthesis", the circuit for the FPGA, or "simulation", the
# same design with the two local differences below, which only make Verilator faster.
MODELS = ("synthesis", "simulation")


def check_model(model: str) -> str:
    """``model`` if it names a netlist, else a ValueError naming what is allowed."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, not {model!r}")
    return model


MODEL_DIFFERENCES = [
    "general lane multipliers are Verilog '*' instead of radix-4 digit multipliers (checked equal on every "
    "code pair of every format pair used: see lane_multiplier_check)",
    "MAC and requantizer pipeline data registers load only behind a valid beat (valid/first/last bits "
    "identical; no register is read without its valid bit)",
]


def multiplier_pairs(net: "Network") -> list[tuple[IntFormat, IntFormat]]:
    """The distinct (weight, activation) formats of the layers with a general multiplier."""
    pairs = []
    for layer in net.layers:
        pair = (layer.weight_format, layer.in_format)
        if product_kind(*pair) == "multiply" and pair not in pairs:
            pairs.append(pair)
    return pairs


@lru_cache(maxsize=None)
def _mismatches(weight: str, act: str) -> tuple[int, list]:
    from amaranth.hdl import Module, Signal
    from amaranth.sim import Simulator

    from .arith import activation_multiples

    wf, af = parse_format(weight), parse_format(act)
    m = Module()
    w, x = Signal(wf.bits), Signal(af.bits)
    out = Signal(digit_multiply(w, wf, activation_multiples(x, af)).shape())
    m.d.comb += out.eq(digit_multiply(w, wf, activation_multiples(x, af)))
    w_values = [int(v) for v in wf.decode(list(range(1 << wf.bits)))]
    x_values = [int(v) for v in af.decode(list(range(1 << af.bits)))]
    bad = []

    async def every_pair(ctx):
        for wc, wv in enumerate(w_values):
            ctx.set(w, wc)
            for xc, xv in enumerate(x_values):
                ctx.set(x, xc)
                if ctx.get(out) != wv * xv:
                    bad.append((wc, xc, ctx.get(out), wv * xv))

    sim = Simulator(m)
    sim.add_testbench(every_pair)
    sim.run()
    return len(w_values) * len(x_values), bad


def check_lane_multipliers(pairs) -> list[dict]:
    """Simulate the digit multiplier on every code pair of each format pair; raise on any difference.

    Returns one record per pair for the manifest. (Exhaustive simulation rather than a SAT
    proof: 65,536 pairs of s8×s8 take ~5 s in Amaranth's simulator, the SAT proof ~37 s.)
    """
    records = []
    for wf, af in pairs:
        n, bad = _mismatches(str(wf), str(af))
        if bad:
            wc, xc, got, want = bad[0]
            raise AssertionError(f"digit multiplier {wf} x {af}: code pair ({wc}, {xc}) gives {got}, not {want} "
                                 f"({len(bad)} of {n} pairs differ); refusing to write a simulation model")
        records.append({"weight": str(wf), "act": str(af), "code_pairs": n, "mismatches": 0})
    return records
