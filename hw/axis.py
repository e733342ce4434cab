"""The AXI4-Stream-named wrapper that ``lowbit build`` writes beside the core: ``<top>_axis.v``.

The core (``lowbit_net``) speaks Amaranth's stream names (``i__valid``/``i__ready``/
``i__payload``, ``o__…``) with an active-high synchronous ``rst``. FPGA flows (Vivado's IP
integrator, Quartus Platform Designer, LiteX) recognise AXI4-Stream by its names, so the
wrapper renames the ports and adds only what AXI4-Stream asks for and the core does not have:

* ``aclk``/``aresetn``: ``rst = ~aresetn`` (still synchronous: sampled on the rising edge of
  ``aclk``). While ``aresetn`` is low, ``s_axis_tready`` and ``m_axis_tvalid`` are held low: the
  core discards anything offered during reset (its ``i__ready`` may read 1 then) and may show
  a stale ``o__valid`` in the first reset cycle, and AXI4-Stream wants neither visible.
* ``tdata`` widths rounded up to whole bytes (AXI4-Stream's rule): the core's payload sits in
  the low bits; the upper bits of ``s_axis_tdata`` are ignored, those of ``m_axis_tdata`` are 0.
* ``s_axis_tlast`` is accepted and checked, never used: the core counts beats (an image is
  ``input_stream.beats_per_image`` beats), so a ``tlast`` cannot end an image early. The wrapper
  counts accepted beats the same way, and ``s_axis_tlast_error`` goes high at the first beat
  whose ``tlast`` disagrees with that count (1 on the last beat of an image, 0 elsewhere) and
  stays high until reset: a wrong beat count upstream is visible instead of silently
  misaligning every later image.
* ``m_axis_tlast`` is 1 on every output beat (one beat per image).

Every other port of the core (the ``stat_*`` counters) is passed through under its own name.
Widths come from the core's port map (:func:`lowbit.hw.emit.port_map`), never from a copy.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["AxisWrapper", "axis_wrapper", "STREAM_PORTS"]

#: core port → wrapper port (the renamed stream handshakes and payloads)
STREAM_PORTS = {
    "i__valid": "s_axis_tvalid", "i__ready": "s_axis_tready", "i__payload": "s_axis_tdata",
    "o__valid": "m_axis_tvalid", "o__ready": "m_axis_tready", "o__payload": "m_axis_tdata",
}
CLOCK, RESET = "aclk", "aresetn"
TLAST_ERROR = "s_axis_tlast_error"


def _bytes(width: int) -> int:
    """``width`` rounded up to whole bytes (AXI4-Stream's TDATA rule)."""
    return 8 * -(-width // 8)


class AxisWrapper:
    """The wrapper of one core: its Verilog text and its manifest record.

    Parameters
    ----------
    port_map : dict
        :func:`lowbit.hw.emit.port_map` of the core: ``clock``, ``reset`` and ``ports``.
    beats_per_image : int
        Input beats of one image (the manifest's ``input_stream.beats_per_image``).
    top : str
        The core's module name; the wrapper is ``<top>_axis`` in ``<top>_axis.v``.
    """

    def __init__(self, port_map: dict, beats_per_image: int, top: str):
        if not isinstance(beats_per_image, int) or isinstance(beats_per_image, bool) or beats_per_image < 1:
            raise ValueError(f"beats_per_image must be a positive integer, not {beats_per_image!r}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", top):
            raise ValueError(f"top must be a Verilog identifier, not {top!r}")
        ports = port_map["ports"]
        missing = [p for p in STREAM_PORTS if p not in ports]
        if missing:
            raise ValueError(f"the port map of {top!r} must have the stream ports {', '.join(STREAM_PORTS)}; "
                             f"it lacks {', '.join(missing)}")
        self.top, self.name, self.beats_per_image = top, f"{top}_axis", beats_per_image
        self.core_clock = port_map["clock"]
        self.core_reset = port_map["reset"].split()[0]
        self._core = ports
        self.ports = self._ports()
        self.text = self._verilog()

    @property
    def file(self) -> str:
        return f"{self.name}.v"

    def _ports(self) -> dict:
        """Wrapper port name → ``dir``, ``width`` and the ``core_port`` it carries (``None``: the
        wrapper's own), in declaration order."""
        core = self._core
        out = {CLOCK: {"dir": "input", "width": 1, "core_port": self.core_clock},
               RESET: {"dir": "input", "width": 1, "core_port": self.core_reset}}
        for c in ("i__valid", "i__ready", "i__payload"):
            w = core[c]["width"]
            out[STREAM_PORTS[c]] = {"dir": core[c]["dir"], "width": _bytes(w) if c.endswith("payload") else w,
                                    "core_port": c}
        out["s_axis_tlast"] = {"dir": "input", "width": 1, "core_port": None}
        for c in ("o__valid", "o__ready", "o__payload"):
            w = core[c]["width"]
            out[STREAM_PORTS[c]] = {"dir": core[c]["dir"], "width": _bytes(w) if c.endswith("payload") else w,
                                    "core_port": c}
        out["m_axis_tlast"] = {"dir": "output", "width": 1, "core_port": None}
        out[TLAST_ERROR] = {"dir": "output", "width": 1, "core_port": None}
        for name, p in core.items():  # the counters, and whatever else the core grows
            if name not in STREAM_PORTS:
                if name in out:
                    raise ValueError(f"core port {name!r} clashes with a port of the AXI4-Stream wrapper")
                out[name] = {"dir": p["dir"], "width": p["width"], "core_port": name}
        return out

    def _verilog(self) -> str:
        core, ports = self._core, self.ports
        n = self.beats_per_image
        cw = max(1, (n - 1).bit_length())
        in_w, out_w = core["i__payload"]["width"], core["o__payload"]["width"]
        s_w, m_w = ports["s_axis_tdata"]["width"], ports["m_axis_tdata"]["width"]

        def decl(name, p):
            rng = f"[{p['width'] - 1}:0] " if p["width"] > 1 else ""
            return f"  {p['dir']} wire {rng}{name}"

        decls = [decl(name, p) for name, p in ports.items()]
        if s_w > in_w:  # s_axis_tdata's padding bits are ignored, on purpose
            k = list(ports).index("s_axis_tdata")
            decls[k] = f"  /* verilator lint_off UNUSEDSIGNAL */\n{decls[k]}"
            decls[k + 1] = f"  /* verilator lint_on UNUSEDSIGNAL */\n{decls[k + 1]}"
        lines = [
            f"// Generated by lowbit.hw.axis: AXI4-Stream names around {self.top} (plain Verilog-2005).",
            f"// One image = {n} beats on s_axis (the core counts them; s_axis_tlast is only checked:",
            f"// {TLAST_ERROR} goes high, until reset, at the first beat whose tlast disagrees).",
            f"// One beat per image on m_axis, m_axis_tlast = 1. Reset: aresetn low, sampled on aclk's rising edge.",
            f"// tdata carries the core's payload in its low bits: s_axis_tdata[{in_w - 1}:0] -> i__payload,",
            f"// m_axis_tdata[{out_w - 1}:0] <- o__payload (offsets: manifest.json ports.o__payload).",
        ]
        lines.append(f"module {self.name} (")
        lines.append(",\n".join(decls))
        lines.append(");")
        lines += [
            f"  wire core_i_ready, core_o_valid;",
            f"  wire [{out_w - 1}:0] core_o_payload;",
            f"  reg [{cw - 1}:0] beat;",
            f"  reg tlast_error;",
            f"  initial begin  // the reset state from power-on too, like the core's registers",
            f"    beat = {cw}'d0;",
            f"    tlast_error = 1'b0;",
            f"  end",
            f"  wire s_fire = s_axis_tvalid & s_axis_tready;",
            f"  wire s_last = beat == {cw}'d{n - 1};",
            "",
            f"  assign s_axis_tready = aresetn & core_i_ready;",
            f"  assign m_axis_tvalid = aresetn & core_o_valid;",
            f"  assign m_axis_tdata = " + (f"{{{m_w - out_w}'d0, core_o_payload}};" if m_w > out_w
                                           else "core_o_payload;"),
            f"  assign m_axis_tlast = 1'b1;",
            f"  assign {TLAST_ERROR} = tlast_error;",
            "",
            f"  // the core's own beat count, mirrored to check s_axis_tlast against it",
            f"  always @(posedge aclk) begin",
            f"    if (!aresetn) begin",
            f"      beat <= {cw}'d0;",
            f"      tlast_error <= 1'b0;",
            f"    end else if (s_fire) begin",
            f"      beat <= s_last ? {cw}'d0 : beat + {cw}'d1;" if n > 1 else f"      beat <= {cw}'d0;",
            f"      if (s_axis_tlast != s_last) tlast_error <= 1'b1;",
            f"    end",
            f"  end",
            "",
        ]
        conns = [f".{self.core_clock}(aclk)", f".{self.core_reset}(~aresetn)",
                 f".i__valid(s_axis_tvalid)", f".i__ready(core_i_ready)",
                 f".i__payload(s_axis_tdata[{in_w - 1}:0])" if s_w > in_w else ".i__payload(s_axis_tdata)",
                 f".o__valid(core_o_valid)", f".o__ready(m_axis_tready)", f".o__payload(core_o_payload)"]
        conns += [f".{name}({name})" for name in core if name not in STREAM_PORTS]
        lines.append(f"  {self.top} core (")
        lines.append(",\n".join(f"    {c}" for c in conns))
        lines += ["  );", "endmodule", ""]
        return "\n".join(lines)

    def manifest_entry(self) -> dict:
        """The manifest's ``axis_wrapper``: file, module, sha256, clock, reset and every port."""
        return {"file": self.file, "module": self.name,
                "sha256": hashlib.sha256(self.text.encode()).hexdigest(),
                "clock": CLOCK, "reset": f"{RESET} (synchronous, active low)",
                "tlast": (f"s_axis_tlast is checked, not used: {TLAST_ERROR} goes high (until reset) at the first "
                          f"beat whose tlast differs from (beat index within its image == beats_per_image - 1); "
                          f"m_axis_tlast is 1 on every beat (one beat per image)"),
                "ports": self.ports}


def axis_wrapper(port_map: dict, beats_per_image: int, top: str) -> AxisWrapper:
    """The AXI4-Stream wrapper of the core ``top`` with ``port_map`` (see :class:`AxisWrapper`)."""
    return AxisWrapper(port_map, beats_per_image, top)
