"""The integration surface that docs/integration.md states: the AXI4-Stream wrapper
(``lowbit_net_axis.v``), the counters and the reset.

* Amaranth simulation of :class:`~lowbit.hw.network.NetworkTop`: every counter, every cycle,
  against a count kept by the testbench; 32-bit wrap; one reset cycle in mid-stream restores
  the power-on state exactly (same outputs, same cycle of every beat); nothing counts and
  nothing is taken while ``rst`` is high.
* The wrapper: its port widths (elaborated by Verilator) equal the manifest's record, derived
  from the core's port map; it lints clean under ``verilator -Wall``; and on Verilator (cocotb)
  it streams images bit-exact with gaps and stalls, holds ``tready``/``tvalid`` low in reset,
  raises ``s_axis_tlast_error`` at a wrong ``tlast`` and keeps it until ``aresetn``.

The cocotb test itself (:func:`axis_wrapper_tb`) lives at the end of this module, which the
simulator imports as ``tests.test_axis``.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest

from lowbit.hw.axis import STREAM_PORTS
from lowbit.hw.build import build_network, load_build
from lowbit.sw.fold import plan_folding
from lowbit.sw.golden import run_network
from lowbit.sw.ops import lower
from lowbit.sw.randnet import random_cnn, random_network

STATS = ("stat_cycles", "stat_images", "stat_in_stalls", "stat_out_stalls")


# ---- Amaranth: counters and reset ------------------------------------------------------------
def _top(ops):
    """NetworkTop in a module with an explicit sync domain, so the testbench drives ``rst``."""
    from amaranth.hdl import ClockDomain, Elaboratable, Module

    from lowbit.hw.network import NetworkTop

    class Top(Elaboratable):
        def __init__(self):
            self.dut, self.cd = NetworkTop(ops), ClockDomain("sync")

        def elaborate(self, platform):
            m = Module()
            m.domains.sync = self.cd
            m.submodules.dut = self.dut
            return m

    return Top()


def _net():
    net = random_network([12, 8, 6, 4], "s4", "u4", seed=1)
    ops = lower(net, plan_folding(net, [(4, 3), (2, 4), (2, 2)]))
    x = net.input.apply(np.random.default_rng(0).integers(0, 256, (5, 12)))
    return net, ops, x


async def _stream(ctx, dut, beats, n_out, limit, *, gap=0.0, stall=0.0, seed=0, check=None):
    """Offer ``beats`` and take outputs until ``n_out`` arrived or ``limit`` cycles passed.

    Returns the ``stat_cycles`` value of each input and output transfer, the outputs and the
    counters at the end. ``check`` (a dict of counts kept here) is compared with the counters
    in every cycle.
    """
    rng = random.Random(seed)
    sent, ins, outs = 0, [], []
    for _ in range(limit):
        if len(outs) >= n_out:
            break
        offer = sent < len(beats) and not rng.random() < gap
        ctx.set(dut.i.valid, offer)
        if offer:
            ctx.set(dut.i.payload, beats[sent])
        ctx.set(dut.o.ready, not rng.random() < stall)
        valid_in, ready_in = ctx.get(dut.i.valid), ctx.get(dut.i.ready)
        valid_out, ready_out = ctx.get(dut.o.valid), ctx.get(dut.o.ready)
        if check is not None:  # the counters count the edges before this cycle
            assert tuple(ctx.get(getattr(dut, n)) for n in STATS) == tuple(check[n] for n in STATS)
        c = ctx.get(dut.stat_cycles)
        if valid_in and ready_in:
            ins.append(c)
            sent += 1
        if valid_out and ready_out:
            p = ctx.get(dut.o.payload)
            outs.append((int(p.cls), [int(v) for v in p.logits], c))
        if check is not None:
            check["stat_cycles"] += 1
            check["stat_images"] += bool(valid_out and ready_out)
            check["stat_in_stalls"] += bool(valid_in and not ready_in)
            check["stat_out_stalls"] += bool(valid_out and not ready_out)
        await ctx.tick()
    ctx.set(dut.i.valid, 0)
    return ins, outs, tuple(ctx.get(getattr(dut, n)) for n in STATS)


def _simulate(top, testbench):
    from amaranth.sim import Simulator

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


def test_counters_count_the_edges_after_reset_each_cycle():
    """stat_cycles reads k-1 in the k-th cycle after reset (it counts rising edges with rst low);
    each other counter counts the edges at which its condition held; checked every cycle
    under random gaps and stalls, then the 32-bit wrap."""
    net, ops, x = _net()
    top = _top(ops)
    dut = top.dut
    beats = ops[0].in_stream.encode(x)
    golden = run_network(net, x)
    seen = {}

    async def tb(ctx):
        for _ in range(3):  # power-on without reset: the registers start at their reset values
            await ctx.tick()
        assert ctx.get(dut.stat_cycles) == 3
        ctx.set(top.cd.rst, 1)
        await ctx.tick()
        ctx.set(top.cd.rst, 0)
        check = dict.fromkeys(STATS, 0)
        seen["run"] = await _stream(ctx, dut, beats, len(x), 2000, gap=0.3, stall=0.4, seed=3, check=check)
        seen["check"] = check
        # wrap: the counters are plain 32-bit registers
        ctx.set(dut.stat_cycles, 2**32 - 2)
        await ctx.tick()
        seen["wrap"] = [ctx.get(dut.stat_cycles)]
        await ctx.tick()
        seen["wrap"].append(ctx.get(dut.stat_cycles))

    _simulate(top, tb)
    ins, outs, stats = seen["run"]
    assert [o[0] for o in outs] == golden.classes.tolist()
    assert [o[1] for o in outs] == golden.logits.tolist()
    assert stats[1] == len(x) and stats[2] > 0 and stats[3] > 0  # both kinds of stall happened
    # the run stopped one edge after the last output transfer, which happened in cycle outs[-1][2]
    assert stats[0] == seen["check"]["stat_cycles"] == outs[-1][2] + 1
    assert seen["wrap"] == [2**32 - 1, 0]


def test_one_reset_cycle_in_mid_stream_restores_the_power_on_state():
    """After images in flight and a result waiting, one cycle of rst (with a beat offered)
    gives exactly the fresh run: the same outputs at the same stat_cycles values."""
    net, ops, x = _net()
    top = _top(ops)
    dut = top.dut
    beats = ops[0].in_stream.encode(x)
    golden = run_network(net, x)
    seen = {}

    async def tb(ctx):
        ctx.set(top.cd.rst, 1)
        await ctx.tick()
        ctx.set(top.cd.rst, 0)
        seen["fresh"] = await _stream(ctx, dut, beats, len(x), 500)
        for cycles in (1, 5):  # one reset cycle, then a longer reset
            # garbage in flight: two images, results held back by a stalled output
            await _stream(ctx, dut, beats + beats, 1, 60, stall=1.0)
            seen[f"busy{cycles}"] = ctx.get(dut.o.valid)
            ctx.set(dut.i.valid, 1)  # a beat offered during reset is dropped
            ctx.set(dut.i.payload, beats[3])
            ctx.set(top.cd.rst, 1)
            await ctx.tick()
            seen[f"in_reset{cycles}"] = (ctx.get(dut.i.ready), ctx.get(dut.o.valid),
                                         [ctx.get(getattr(dut, n)) for n in STATS])
            for _ in range(cycles - 1):  # held longer: nothing counts while rst is high
                await ctx.tick()
            seen[f"held{cycles}"] = [ctx.get(getattr(dut, n)) for n in STATS]
            ctx.set(top.cd.rst, 0)
            ctx.set(dut.i.valid, 0)
            seen[f"after{cycles}"] = await _stream(ctx, dut, beats, len(x), 500)

    _simulate(top, tb)
    for cycles in (1, 5):
        assert seen[f"busy{cycles}"] == 1  # a result was waiting when reset came
        # i.ready reads 1 in reset (it is the idle state's), o.valid 0, counters 0
        assert seen[f"in_reset{cycles}"] == (1, 0, [0, 0, 0, 0]) and seen[f"held{cycles}"] == [0, 0, 0, 0]
        assert seen[f"after{cycles}"] == seen["fresh"]
    ins, outs, stats = seen["fresh"]
    # the figures docs/integration.md quotes: 4 beats per image, one image every 8 cycles, the
    # first layer (NF = 2) refusing input 4 of every 8 cycles while it replays (4 images x 4 stalls)
    assert ins[:6] == [0, 1, 2, 3, 8, 9] and [o[2] for o in outs] == [49, 57, 65, 73, 81]
    assert stats == (82, 5, 16, 0)
    assert [o[0] for o in outs] == golden.classes.tolist() and [o[1] for o in outs] == golden.logits.tolist()


# ---- the wrapper ---------------------------------------------------------------------------------
def _build(tmp_path, sizes, folds, name="net"):
    """A build of a random MLP (``sizes``: layer widths) or, with ``sizes`` a tuple of layer
    strings, of a random CNN on 8×8×1 images."""
    if isinstance(sizes, tuple):
        net = random_cnn((8, 8, 1), sizes, "s4", "u4", seed=5)
    else:
        net = random_network(sizes, "s4", "u4", seed=5)
    out = tmp_path / name
    build_network(net, plan_folding(net, folds), out, simulation_model=False)
    manifest, _ = load_build(out)
    return net, out, manifest


def _verilator(*args, cwd=None) -> subprocess.CompletedProcess:
    from lowbit.sim.runner import ensure_simulator

    exe = ensure_simulator("verilator")
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, env=dict(os.environ))


def _elaborated_ports(out: Path, module: str, tmp: Path) -> dict:
    """Port name → (direction, width) of ``module`` as Verilator elaborates it (``--json-only``)."""
    proc = _verilator("--json-only", "-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "--top-module", module,
                      "-Mdir", str(tmp), str(out / f"{module}.v"), str(out / "lowbit_net.v"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    tree = json.loads(next(tmp.glob("*.tree.json")).read_text())
    dtypes, ports = {}, {}

    def walk(node, in_module=False):
        if isinstance(node, dict):
            if node.get("type") == "BASICDTYPE":
                dtypes[node["addr"]] = node.get("range")
            here = in_module or (node.get("type") == "MODULE" and node.get("name") == module)
            if here and node.get("type") == "VAR" and node.get("direction") in ("INPUT", "OUTPUT"):
                ports[node["name"]] = (node["direction"].lower(), node["dtypep"])
            for v in node.values():
                walk(v, here and node.get("type") != "CELL")
        elif isinstance(node, list):
            for v in node:
                walk(v, in_module)

    walk(tree)
    width = lambda r: 1 if r is None else int(r.split(":")[0]) - int(r.split(":")[1]) + 1  # noqa: E731
    return {name: (d, width(dtypes[t])) for name, (d, t) in ports.items()}


@pytest.mark.parametrize("sizes, folds", [([12, 8, 4], [(4, 3), (2, 4)]),  # padded tdata, 4 beats/image
                                          ([16, 8], [(8, 16)]),             # 64-bit input, 1 beat/image
                                          (("4C3", "MP2", "10"), [(2, 3), (2,), (5, 4)])],  # 64 pixel beats
                         ids=["padded", "one-beat", "cnn"])
def test_wrapper_ports_equal_the_manifest(tmp_path, sizes, folds):
    net, out, manifest = _build(tmp_path, sizes, folds)
    rec, core = manifest["axis_wrapper"], manifest["ports"]
    assert rec["file"] == "lowbit_net_axis.v" and rec["module"] == "lowbit_net_axis"
    assert (out / rec["file"]).is_file()
    # every core port is carried by exactly one wrapper port, with the core's width (tdata: whole bytes)
    carried = {p["core_port"]: (name, p) for name, p in rec["ports"].items() if p["core_port"] in core}
    assert set(carried) == set(core)
    for c, (name, p) in carried.items():
        assert name == STREAM_PORTS.get(c, c) and p["dir"] == core[c]["dir"]
        w = core[c]["width"]
        assert p["width"] == (-(-w // 8) * 8 if c.endswith("payload") else w)
    assert {n for n, p in rec["ports"].items() if p["core_port"] is None} == {
        "s_axis_tlast", "m_axis_tlast", "s_axis_tlast_error"}
    # and the Verilog, as Verilator elaborates it, has exactly these ports
    got = _elaborated_ports(out, rec["module"], tmp_path / "json")
    assert got == {n: (p["dir"], p["width"]) for n, p in rec["ports"].items()}


def test_altered_wrapper_is_refused(tmp_path):
    _, out, _ = _build(tmp_path, [12, 8, 4], [(4, 3), (2, 4)])
    f = out / "lowbit_net_axis.v"
    f.write_text(f.read_text().replace("1'b1;", "1'b0;", 1))
    with pytest.raises(ValueError, match=r"AXI4-Stream wrapper '.*lowbit_net_axis.v' has been modified"):
        load_build(out)


@pytest.mark.hdl
def test_wrapper_lints_clean_with_the_core(tmp_path):
    """``verilator --lint-only -Wall``: no warning at all in the wrapper (Amaranth's core has its
    own width warnings, which the project's Verilator flags already accept)."""
    for k, (sizes, folds) in enumerate((([12, 8, 4], [(4, 3), (2, 4)]), ([16, 8], [(8, 16)]),
                                        (("4C3", "MP2", "10"), [(2, 3), (2,), (5, 4)]))):
        _, out, _ = _build(tmp_path, sizes, folds, name=f"n{k}")
        proc = _verilator("--lint-only", "-Wall", "-Wno-fatal", "--top-module", "lowbit_net_axis",
                          str(out / "lowbit_net_axis.v"), str(out / "lowbit_net.v"))
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "%Error" not in proc.stderr
        assert [l for l in proc.stderr.splitlines() if l.startswith("%") and "lowbit_net_axis.v" in l] == []


def _pack_outputs(golden, manifest) -> list[int]:
    """The o__payload words the golden model predicts (cls and logits at the port map's offsets)."""
    f = manifest["ports"]["o__payload"]["fields"]
    cls, lg = f["cls"], f["logits"]
    w = lg["elem"]["width"]
    words = []
    for c, logits in zip(golden.classes.tolist(), golden.logits.tolist()):
        v = c << cls["offset"]
        for j, value in enumerate(logits):
            v |= (value & ((1 << w) - 1)) << (lg["offset"] + j * w)
        words.append(v)
    return words


@pytest.mark.hdl
def test_wrapper_streams_images_and_flags_a_wrong_tlast(tmp_path):
    from lowbit.sim.runner import run_testbench

    net, out, manifest = _build(tmp_path, [12, 8, 4], [(4, 3), (2, 4)])
    n = 12
    x = net.input.apply(np.random.default_rng(1).integers(0, 256, (n, 12)))
    beats = lower(net, plan_folding(net, [(4, 3), (2, 4)]))[0].in_stream.encode(x)
    expected = _pack_outputs(run_network(net, x), manifest)
    run = run_testbench(verilog=[out / "lowbit_net.v", out / "lowbit_net_axis.v"], top="lowbit_net_axis",
                        test_module="tests.test_axis", build_dir=tmp_path / "sim",
                        config={"beats": beats, "beats_per_image": manifest["input_stream"]["beats_per_image"],
                                "payload_bits": manifest["ports"]["i__payload"]["width"],
                                "ports": list(manifest["axis_wrapper"]["ports"])})
    assert run.passed, run.report
    r = run.report
    assert r["widths"] == {k: v["width"] for k, v in manifest["axis_wrapper"]["ports"].items()}
    assert r["in_reset"] == {"s_axis_tready": [0, 0, 0], "m_axis_tvalid": [0, 0, 0]}
    assert r["outputs"] == expected and r["tlast"] == [1] * n
    assert r["error_after_good_images"] == 0 and r["stats_after_good_images"][1] == n
    # the wrong tlast (on beat 1 of the next image) is flagged from the next cycle on, and held
    assert r["error_trace"] == [0, 1, 1, 1, 1, 1]
    assert r["wrong_tlast_image"] == expected[0]  # the core still counted beats: the image is intact
    # the first cycle after reset reads stat_cycles 0, the next 1 (rising edges with reset released)
    assert r["after_reset"] == {"error": 0, "stats": [0, 0, 0, 0]} and r["one_cycle_later"] == [1, 0, 0, 0]


# ---- the cocotb side of the last test (run inside the simulator) ------------------------------------
try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import FallingEdge, Timer
except ImportError:  # pragma: no cover - cocotb is a dependency
    cocotb = None

if cocotb is not None:
    @cocotb.test()
    async def axis_wrapper_tb(dut):
        with open(os.environ["LOWBIT_TB_CONFIG"]) as f:
            cfg = json.load(f)
        beats, bpi, in_w = cfg["beats"], cfg["beats_per_image"], cfg["payload_bits"]
        pad = len(dut.s_axis_tdata) - in_w
        rng = random.Random(7)
        report = {"widths": {name: len(getattr(dut, name)) for name in cfg["ports"]}}
        cocotb.start_soon(Clock(dut.aclk, 10, unit="ns").start())

        async def cycle():
            """To mid-cycle, inputs settled: what the next rising edge will see."""
            await FallingEdge(dut.aclk)
            await Timer(1, unit="ns")

        def stats():
            return [int(getattr(dut, s).value) for s in STATS]

        # reset: a master that (wrongly) offers a beat meanwhile sees tready low, and no tvalid
        dut.aresetn.value = 0
        dut.s_axis_tvalid.value = 1
        dut.s_axis_tdata.value = beats[0]
        dut.s_axis_tlast.value = 0
        dut.m_axis_tready.value = 1
        report["in_reset"] = {"s_axis_tready": [], "m_axis_tvalid": []}
        for _ in range(3):
            await cycle()
            report["in_reset"]["s_axis_tready"].append(int(dut.s_axis_tready.value))
            report["in_reset"]["m_axis_tvalid"].append(int(dut.m_axis_tvalid.value))
        dut.s_axis_tvalid.value = 0
        dut.aresetn.value = 1

        async def run(beats, tlast, n_out, gap, stall, limit=5000):
            sent, outs, lasts = 0, [], []
            for _ in range(limit):
                if len(outs) >= n_out:
                    break
                offer = sent < len(beats) and not rng.random() < gap
                dut.s_axis_tvalid.value = int(offer)
                if offer:
                    dut.s_axis_tdata.value = beats[sent] | rng.getrandbits(pad) << in_w  # junk in the padding
                    dut.s_axis_tlast.value = tlast[sent]
                dut.m_axis_tready.value = int(not rng.random() < stall)
                await Timer(1, unit="ns")
                if offer and int(dut.s_axis_tready.value):
                    sent += 1
                if int(dut.m_axis_tvalid.value) and int(dut.m_axis_tready.value):
                    outs.append(int(dut.m_axis_tdata.value))
                    lasts.append(int(dut.m_axis_tlast.value))
                await cycle()
            dut.s_axis_tvalid.value = 0
            return outs, lasts

        await cycle()
        good = [int(k % bpi == bpi - 1) for k in range(len(beats))]
        outs, lasts = await run(beats, good, len(beats) // bpi, 0.3, 0.3)
        report["outputs"], report["tlast"] = outs, lasts
        report["error_after_good_images"] = int(dut.s_axis_tlast_error.value)
        report["stats_after_good_images"] = stats()

        # one image with tlast on its beat 1 instead of its last beat, at full rate into an idle core
        wrong = [int(k == 1) for k in range(bpi)]
        dut.m_axis_tready.value = 1
        for _ in range(50):
            await cycle()
        trace, sent, outs = [], 0, []
        for _ in range(200):
            if sent < bpi:
                dut.s_axis_tvalid.value = 1
                dut.s_axis_tdata.value = beats[sent]
                dut.s_axis_tlast.value = wrong[sent]
            else:
                dut.s_axis_tvalid.value = 0
            await Timer(1, unit="ns")
            took = sent < bpi and int(dut.s_axis_tready.value)
            if int(dut.m_axis_tvalid.value):
                outs.append(int(dut.m_axis_tdata.value))
            if sent >= 1 and len(trace) < 6:  # from the cycle of the wrong beat on
                trace.append(int(dut.s_axis_tlast_error.value))
            sent += bool(took)
            await cycle()
            if outs and len(trace) >= 6:
                break
        report["error_trace"] = trace
        report["wrong_tlast_image"] = outs[0] if outs else None

        dut.aresetn.value = 0  # one edge with aresetn low
        await cycle()
        dut.aresetn.value = 1
        await Timer(1, unit="ns")
        report["after_reset"] = {"error": int(dut.s_axis_tlast_error.value), "stats": stats()}
        await cycle()
        report["one_cycle_later"] = stats()
        with open(os.environ["LOWBIT_TB_RESULT"], "w") as f:
            json.dump(report, f)
