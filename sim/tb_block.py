"""cocotb testbench of the MAC-array + requantizer block (``lowbit gen mac-requant``).

The spec and port map come from the JSON that ``lowbit.hw.emit`` wrote next to the
Verilog; the run configuration from ``LOWBIT_TB_CONFIG``. Three phases, all scored
against the golden model (:meth:`MacArraySpec.golden` then :meth:`RequantSpec.golden`):

1. full rate, no gaps: corner and random vectors; cycles counted against the analytical
   model (one cycle per beat plus the pipeline latency);
2. random valid gaps and random backpressure, several bias/multiplier/shift settings;
3. requantizer corners through the whole block: the bias is set per vector so that
   ``acc + bias`` lands on every saturation boundary and every rounding tie.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np

from lowbit.sim.portmap import pack_port, unpack_array
from lowbit.sim.tbkit import StreamTB
from lowbit.sim.stimulus import mac_beats, mac_vectors, requant_corner_accs
from lowbit.sw.formats import signed_range
from lowbit.sw.specs import MacArraySpec, RequantSpec

from lowbit.hw.requant import LATENCY as REQUANT_LATENCY  # noqa: E402


def expected_cycles(mac: MacArraySpec, total_beats: int) -> int:
    """Edges from the first input transfer to the last output transfer, both counted: the
    beats, the MAC array's latency (operands, products, adder-tree stages, accumulator) and
    the requantizer's four stages."""
    return total_beats + mac.latency + REQUANT_LATENCY


class BlockTB(StreamTB):
    """Owns clock, reset, driver, monitor, model and scoreboard of one block."""

    def __init__(self, dut, meta: dict, cfg: dict):
        super().__init__(dut)
        self.ports = meta["ports"]
        self.mac = MacArraySpec.from_json(meta["spec"]["mac"])
        self.rq = RequantSpec.from_json(meta["spec"]["requant"])
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.get("seed", 0))
        self.prng = random.Random(cfg.get("seed", 0))
        self.compared = 0
        self.mismatches: list[dict] = []

    def set_params(self, bias, mult, shift):
        pe = self.mac.pe
        self.dut.bias.value = pack_port(self.ports["bias"], np.broadcast_to(bias, pe).tolist())
        self.dut.shift.value = pack_port(self.ports["shift"], np.broadcast_to(shift, pe).tolist())
        if self.rq.mult_bits:
            self.dut.mult.value = pack_port(self.ports["mult"], np.broadcast_to(mult, pe).tolist())

    async def drive(self, beats, gap: float, log: list):
        for beat in beats:
            while gap and self.prng.random() < gap:
                await self.idle_input()
            log.append(await self.send(pack_port(self.ports["i__payload"], beat)))
        self.dut.i__valid.value = 0

    async def collect(self, n: int, stall: float, log: list) -> list[list[int]]:
        out = []
        while len(out) < n:
            payload = await self.receive(not (stall and self.prng.random() < stall))
            if payload is not None:
                codes = unpack_array(self.ports["o__payload"], payload.to_unsigned())
                out.append(self.rq.out_format.decode(np.array(codes)).tolist())
                log.append(self.cycle)  # the edge on which the transfer happens, like drive()
        self.dut.o__ready.value = 0
        return out

    def model(self, x, w, bias, mult, shift) -> list[int]:
        acc = self.mac.golden(x, w)
        return self.rq.golden(acc, bias, mult, shift).tolist()

    async def run_batch(self, vectors, bias, mult, shift, gap=0.0, stall=0.0, label=""):
        """Send vectors with fixed parameters, score every output; returns (in_log, out_log)."""
        self.set_params(bias, mult, shift)
        beats = [b for x, w in vectors for b in mac_beats(self.mac, x, w)]
        in_log, out_log = [], []
        driver = cocotb.start_soon(self.drive(beats, gap, in_log))
        got = await self.collect(len(vectors), stall, out_log)
        await driver
        for n, ((x, w), g) in enumerate(zip(vectors, got)):
            exp = self.model(x, w, bias, mult, shift)
            self.compared += 1
            if g != exp:
                self.mismatches.append({"phase": label, "vector": n, "got": g, "expected": exp,
                                        "bias": np.asarray(bias).tolist(), "shift": int(np.max(shift)),
                                        "mult": int(np.max(mult))})
        return in_log, out_log, len(beats)

    def random_params(self):
        rq = self.rq
        lo, hi = signed_range(rq.bias_bits)
        bias = self.rng.integers(lo, hi + 1, self.mac.pe)
        mult = self.rng.integers(0 if rq.mult_bits else 1, (1 << rq.mult_bits) if rq.mult_bits else 2, self.mac.pe)
        shift = self.rng.integers(0, rq.max_shift + 1, self.mac.pe)
        return bias, mult, shift


@cocotb.test()
async def block_matches_golden_model(dut):
    cfg = json.loads(open(os.environ["LOWBIT_TB_CONFIG"]).read())
    meta = json.loads(open(cfg["portmap"]).read())
    tb = BlockTB(dut, meta, cfg)
    await tb.start()
    n_random = cfg.get("n_random", 50)
    report = {}

    # Phase 1: full rate, cycle count against the model.
    shift = min(tb.rq.max_shift, max(0, tb.mac.acc_bits - tb.rq.out_format.bits))
    vectors = mac_vectors(tb.mac, n_random, tb.rng)
    in_log, out_log, n_beats = await tb.run_batch(vectors, 0, 1, shift, label="full-rate")
    report["cycles"] = out_log[-1] - in_log[0] + 1
    report["expected_cycles"] = expected_cycles(tb.mac, n_beats)
    report["beats"] = n_beats
    report["vectors_full_rate"] = len(vectors)

    # Phase 2: gaps and backpressure, several parameter sets.
    for k in range(cfg.get("param_sets", 4)):
        bias, mult, shift = tb.random_params()
        vectors = mac_vectors(tb.mac, max(1, n_random // 4), tb.rng)[-max(1, n_random // 4):]
        await tb.run_batch(vectors, bias, mult, shift, gap=cfg.get("gap", 0.3), stall=cfg.get("stall", 0.3),
                           label=f"gaps-{k}")

    # Phase 3: saturation boundaries and rounding ties, via the bias.
    shifts = sorted({0, 1, min(2, tb.rq.max_shift), tb.rq.max_shift})
    corners = 0
    bias_lo, bias_hi = signed_range(tb.rq.bias_bits)
    for s in shifts:
        mult = 3 if tb.rq.mult_bits >= 2 else 1
        for target in requant_corner_accs(tb.rq, s, mult):
            x, w = mac_vectors(tb.mac, 1, tb.rng)[-1]
            acc = tb.mac.golden(x, w)
            bias = np.clip(target - acc, bias_lo, bias_hi)
            await tb.run_batch([(x, w)], bias, mult, s, label=f"corner-s{s}")
            corners += 1
    report["corner_vectors"] = corners
    report["compared"] = tb.compared
    report["outputs_compared"] = tb.compared * tb.mac.pe
    report["mismatches"] = len(tb.mismatches)
    report["first_mismatches"] = tb.mismatches[:5]
    with open(os.environ["LOWBIT_TB_RESULT"], "w") as f:
        json.dump(report, f, indent=1)
    assert not tb.mismatches, f"{len(tb.mismatches)} mismatching vectors, first: {tb.mismatches[:3]}"
    assert report["cycles"] == report["expected_cycles"], report
