"""Matrix-vector unit: one dense layer folded onto a PE×SIMD MAC array (FINN's MVAU).

Weights and per-channel parameters sit in memories initialised with exactly the packed
images of :mod:`lowbit.sw.pack`; the testbench and the manifest check both against the
same functions, so the hardware cannot hold different numbers than the files.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from lowbit.sw.ops import MatrixVectorOp
from lowbit.sw.pack import layer_specs
from lowbit.sw.specs import MacArraySpec, RequantSpec

from .simmodel import check_model
from .mac import MacArray
from .requant import LATENCY as REQUANT_LATENCY, Requantizer

__all__ = ["MatrixVectorUnit", "layer_specs"]


class MatrixVectorUnit(wiring.Component):
    """A dense layer: SIMD-lane input beats in, PE-lane output beats out.

    For each input vector (SF beats) the unit makes NF passes over it: the first pass
    streams the beats from ``i`` into the MAC array and stores them in an input buffer;
    later passes replay the buffer. Weight bank ``p`` at address ``nf·SF + sf`` feeds row
    ``p``; parameter bank ``p`` at ``nf`` feeds requantizer lane ``p``. A hidden layer emits
    output codes (``out_format`` bits per lane); the last layer (``requant=None``) emits
    logits ``acc + bias`` (``acc_bits`` signed per lane).

    Parameters
    ----------
    op : MatrixVectorOp
        Folded; its memories and block specs are used as they are (built once, in ``sw``).
    model : "synthesis" (default) or "simulation", handed to the MAC array and requantizer

    Members
    -------
    i : ``In(stream.Signature(unsigned(simd·in_bits)))``
    o : ``Out(stream.Signature(unsigned(pe·out_lane_bits)))``
    """

    def __init__(self, op: MatrixVectorOp, *, model: str = "synthesis"):
        if not isinstance(op, MatrixVectorOp) or not op.folded:
            raise TypeError(f"op must be a folded MatrixVectorOp, not {op!r}")
        self._op, self._layer, self._fold, self._model = op, op.layer, op.fold, check_model(model)
        self._mac, self._rq, self._params = op.specs
        super().__init__({
            "i": In(stream.Signature(unsigned(op.in_stream.width))),
            "o": Out(stream.Signature(unsigned(op.out_stream.width))),
        })

    @property
    def out_lane_bits(self) -> int:
        return self._op.out_lane_bits

    @property
    def mac_spec(self) -> MacArraySpec:
        return self._mac

    @property
    def requant_spec(self) -> RequantSpec | None:
        return self._rq

    @property
    def output_buffer_beats(self) -> int:
        """Depth of the output buffer, which the credit count keeps from overflowing.

        A result holds its credit from the cycle its last beat is issued until it leaves ``o``:
        the issue register, the weight read, ``mac_spec.latency``, the requantizer's stages (or
        the logit register), two cycles through the buffer. One result per SF beats, so
        ⌈that / SF⌉ + 1 places let a consumer that is always ready take one every SF cycles.
        """
        tail = REQUANT_LATENCY if self._rq is not None else 1
        held = 2 + self._mac.latency + tail + 2
        return max(2, -(-held // self._fold.sf) + 1)

    def elaborate(self, platform):
        m = Module()
        layer, fold, spec = self._layer, self._fold, self._mac
        NF, SF, PE = fold.nf, fold.sf, fold.pe
        x_bits = fold.simd * layer.in_format.bits
        # The MAC array and requantizer never stall (always_ready streams): every register of the
        # pipeline loads every cycle, with no enable fanned out to thousands of flip-flops, and no
        # ready chain runs from the next unit through this one. Instead the sequencer issues a
        # vector's last beat only while a place in the output buffer is free for its result.
        m.submodules.mac = mac = MacArray(spec, model=self._model, backpressure=False)
        depth = self.output_buffer_beats
        m.submodules.output_buffer = obuf = SyncFIFOBuffered(width=self.o.payload.shape().width, depth=depth)

        # ---- memories, initialised with the packed images ----
        # one weight memory for all PE rows (they read the same address; PE memories would each
        # round up to whole block-RAM ports, see pack.weight_image); PE parameter banks, in logic
        # (read every output, a few words deep: block RAM would waste a block per bank)
        wmem = Memory(shape=unsigned(PE * fold.simd * layer.weight_format.bits), depth=NF * SF,
                      init=self._op.weight_words())
        m.submodules.weights_0 = wmem
        wport = wmem.read_port()
        pports = []
        for p, words in enumerate(self._op.param_words()):
            pmem = Memory(shape=unsigned(self._params.width), depth=NF, init=words, attrs={"ram_style": "logic"})
            m.submodules[f"params_{p}"] = pmem
            pports.append(pmem.read_port())

        # ---- sequencer: (nf, sf) over the folded matrix, one beat per cycle ----
        # first_pass (nf == 0) and last_beat (sf == SF − 1) are registers of their own, set one
        # cycle ahead: they gate i.ready and every advance, so no counter compare sits in front
        nf = Signal(range(max(NF, 2)))
        sf = Signal(range(max(SF, 2)))
        waddr = Signal(range(max(NF * SF, 2)))
        first_pass = Signal(init=1)
        last_beat = Signal(init=int(SF == 1))
        s1_valid, s1_from_in, s1_last = Signal(), Signal(), Signal()
        s1_x = Signal(x_bits)
        # credits: results issued (last beat accepted) and not yet taken from the buffer. room
        # (pending < depth) and full_next (pending == depth − 1) are registers computed from
        # pending alone, so the issue decision is one LUT after them, not an add and a compare
        pending = Signal(range(depth + 1))
        room = Signal(init=1)
        one_short = Signal(init=int(depth == 1))  # pending == depth − 1: one more issue fills it
        may_issue = room | ~last_beat
        advance = may_issue & (~first_pass | self.i.valid)
        m.d.comb += self.i.ready.eq(may_issue & first_pass)
        m.d.comb += [wport.addr.eq(waddr), wport.en.eq(1)]  # the address moves only with advance
        issued = advance & last_beat
        retired = self.o.valid & self.o.ready
        with m.If(issued & ~retired):
            m.d.sync += [pending.eq(pending + 1), room.eq(~one_short), one_short.eq(pending == depth - 2)]
        with m.Elif(retired & ~issued):
            m.d.sync += [pending.eq(pending - 1), room.eq(1), one_short.eq(pending == depth)]

        replay_x = s1_x
        if NF > 1:  # later passes replay the stored vector
            ibuf = Memory(shape=unsigned(x_bits), depth=SF, init=[])
            m.submodules.input_buffer = ibuf
            wr, rd = ibuf.write_port(), ibuf.read_port()
            m.d.comb += [wr.addr.eq(sf), wr.data.eq(self.i.payload), wr.en.eq(self.i.valid & self.i.ready),
                         rd.addr.eq(sf), rd.en.eq(1)]
            replay_x = rd.data

        # the issue register loads every cycle; only its valid bit says whether a beat is real
        m.d.sync += [s1_valid.eq(advance), s1_from_in.eq(first_pass), s1_x.eq(self.i.payload), s1_last.eq(last_beat)]
        with m.If(advance):
            with m.If(last_beat):
                m.d.sync += [sf.eq(0), last_beat.eq(SF == 1)]
                with m.If(nf == NF - 1):
                    m.d.sync += [nf.eq(0), waddr.eq(0), first_pass.eq(1)]
                with m.Else():
                    m.d.sync += [nf.eq(nf + 1), waddr.eq(waddr + 1), first_pass.eq(0)]
            with m.Else():
                m.d.sync += [sf.eq(sf + 1), waddr.eq(waddr + 1), last_beat.eq(sf == SF - 2)]

        m.d.comb += [
            mac.i.valid.eq(s1_valid),
            mac.i.payload.x.eq(Mux(s1_from_in, s1_x, replay_x)),
            mac.i.payload.w.eq(wport.data),  # PE row p in lanes p·SIMD.. (bank 0 lowest)
            mac.i.payload.last.eq(s1_last),
        ]

        # ---- per-channel parameters follow the output fold ----
        # The read port's address is a register that names the row of the next result two
        # cycles before that result leaves the MAC array (mac.o.valid(t) = issued(t − latency − 1),
        # so issued delayed by latency − 1 announces it), and the registered read then holds its
        # parameters while it is requantized: no logic at all between registers and the ROM.
        ahead = issued
        for k in range(spec.latency - 1):
            later = Signal(name=f"result_ahead_{k}")
            m.d.sync += later.eq(ahead)
            ahead = later
        param_row = Signal(range(max(NF, 2)), init=NF - 1)  # the row before row 0
        with m.If(ahead):
            m.d.sync += param_row.eq(Mux(param_row == NF - 1, 0, param_row + 1))
        for port in pports:
            m.d.comb += [port.addr.eq(param_row), port.en.eq(1)]
        bb, mb, sb, ob = self._params.widths

        if self._rq is not None:
            m.submodules.requant = rq = Requantizer(self._rq, model=self._model, backpressure=False)
            m.d.comb += rq.i.valid.eq(mac.o.valid)
            for p, port in enumerate(pports):
                m.d.comb += [rq.i.payload.acc[p].eq(mac.o.payload[p]),
                             rq.i.payload.bias[p].eq(port.data[:bb].as_signed()),
                             rq.i.payload.shift[p].eq(port.data[bb + mb:bb + mb + sb] if sb else 0)]
                if self._rq.mult_bits:
                    m.d.comb += rq.i.payload.mult[p].eq(port.data[bb:bb + mb])
                if self._rq.offset_bits:  # the offset field follows the shift (see ParamLayout)
                    m.d.comb += rq.i.payload.offset[p].eq(port.data[bb + mb + sb:bb + mb + sb + ob].as_signed())
            m.d.comb += [obuf.w_en.eq(rq.o.valid), obuf.w_data.eq(rq.o.payload.as_value())]
        else:
            # logits = acc + bias, one register stage like the requantizer's
            lane = self._mac.acc_bits
            logits = Signal(PE * lane)
            logits_valid = Signal()
            m.d.sync += logits_valid.eq(mac.o.valid)
            for p, port in enumerate(pports):
                total = Signal(signed(lane), name=f"logit_{p}")
                m.d.comb += total.eq(mac.o.payload[p] + port.data[:bb].as_signed())
                m.d.sync += logits[p * lane:(p + 1) * lane].eq(total)
            m.d.comb += [obuf.w_en.eq(logits_valid), obuf.w_data.eq(logits)]
        wiring.connect(m, obuf.r_stream, wiring.flipped(self.o))
        return m
