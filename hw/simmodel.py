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
     what leaves the top is the same. :func:`bounded_equivalence` proves it with yosys's SAT
     solver for small MAC arrays and requantizers (every input sequence of a dozen cycles from
     reset, the tests do); the test suite also simulates both netlists of whole networks with
     random gaps and stalls against the golden model, and ``lowbit sim --model synthesis``
     runs the synthesized netlist itself.
"""

from __future__ import annotations

from contextlib import nullcontext
from functools import lru_cache

from typing import TYPE_CHECKING

from lowbit.sw.formats import IntFormat, parse_format
from lowbit.sw.specs import ProductKind, product_kind

from .arith import digit_multiply

if TYPE_CHECKING:
    from lowbit.sw.ir import Network

__all__ = ["MODELS", "check_model", "behind_valid", "MODEL_DIFFERENCES", "check_lane_multipliers", "multiplier_pairs",
           "bounded_equivalence"]

# Which netlist a generator emits: "synthesis", the circuit for the FPGA, or "simulation", the
# same design with the two local differences below, which only make Verilator faster.
MODELS = ("synthesis", "simulation")


def check_model(model: str) -> str:
    """``model`` if it names a netlist, else a ValueError naming what is allowed."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, not {model!r}")
    return model


def behind_valid(m, model: str):
    """``when(valid)``: ``m.If(valid)`` in the simulation model, no condition at all in the
    synthesis model (whose Verilog thus stays exactly what it was without this switch)."""
    if model == "simulation":
        return m.If
    return lambda valid: nullcontext()


MODEL_DIFFERENCES = [
    "general lane multipliers are Verilog '*' instead of radix-4 digit multipliers (checked equal on every "
    "code pair of every format pair used: see lane_multiplier_check)",
    "MAC and requantizer pipeline data registers load only behind a valid beat (valid/first/last bits "
    "identical; no register is read without its valid bit)",
]


def multiplier_pairs(net) -> list[tuple[IntFormat, IntFormat]]:
    """The distinct (weight, activation) formats of the MAC arrays with a general multiplier,
    over the ops of ``net`` (a Network, or its ops from :func:`lowbit.sw.ops.lower`)."""
    from lowbit.sw.ops import lower

    ops = lower(net) if hasattr(net, "layers") else net
    pairs = []
    for pair in (p for op in ops for p in op.mac_format_pairs()):
        if product_kind(*pair) is ProductKind.MULTIPLY and pair not in pairs:
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
    product = digit_multiply(w, wf, activation_multiples(x, af))
    out = Signal(product.shape())
    m.d.comb += out.eq(product)
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


def bounded_equivalence(make, cycles: int) -> float:
    """Prove that both models of a stream component behave alike for ``cycles`` cycles from reset.

    ``make(model)`` builds the component (an ``i`` stream in, an ``o`` stream out). Both copies
    get the same inputs: reset in the first cycle, then any valid, payload and output ready in
    every cycle. yosys's SAT solver (bounded model check) must find no input sequence for which
    ``i.ready`` or ``o.valid`` differ, or ``o.payload`` differs while ``o.valid`` is high.
    Returns the seconds it took; raises AssertionError with yosys's counterexample otherwise.
    """
    import subprocess
    import tempfile
    import time
    from pathlib import Path

    from amaranth.back import rtlil
    from amaranth.hdl import Module, Signal

    from lowbit.sw.synth import yosys_binary

    m = Module()
    m.submodules.synthesis = a = make("synthesis")
    m.submodules.simulation = b = make("simulation")
    valid, ready, differ = Signal(), Signal(), Signal()
    payload = Signal(len(a.i.payload.as_value()))
    for dut in (a, b):
        m.d.comb += [dut.i.valid.eq(valid), dut.i.payload.eq(payload), dut.o.ready.eq(ready)]
    m.d.comb += differ.eq((a.i.ready != b.i.ready) | (a.o.valid != b.o.valid)
                          | (a.o.valid & (a.o.payload.as_value() != b.o.payload.as_value())))
    text = rtlil.convert(m, ports=[valid, payload, ready, differ], name="miter")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "miter.il").write_text(text)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [yosys_binary(), "-p", "read_rtlil miter.il; prep -top miter; flatten; "
             f"sat -seq {cycles} -set-at 1 rst 1 -set-init-undef -set-def-inputs -prove differ 0 -prove-skip 1 "
             "-show-inputs -show-outputs miter"],
            capture_output=True, text=True, cwd=tmp)
        seconds = time.perf_counter() - t0
    if "SAT proof finished - no model found: SUCCESS!" not in proc.stdout:
        trace = proc.stdout[proc.stdout.rfind("Time Signal Name"):] if "Time Signal Name" in proc.stdout else ""
        raise AssertionError(f"the two models differ within {cycles} cycles:\n{trace[:4000]}{proc.stderr[-2000:]}")
    return seconds
