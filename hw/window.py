"""Sliding-window unit: a convolution's NHWC pixel stream in, its im2col beats out (FINN's
ConvolutionInputGenerator), for an unchanged matrix-vector unit after it.

The op (:class:`lowbit.sw.ops.SlidingWindowOp`) owns the geometry: streams, the line buffer's
size ``D`` (pixels), its banks and the cycle model; this module is the circuit.

Line buffer
-----------
A circular buffer of ``D`` pixels, each ``CB = C/L`` words of ``L`` lanes, over ``banks``
memories (``amaranth.lib.memory``, one write and one synchronous read port each): pixel ``q``
(raster index counted from the first image) sits in bank ``q mod banks`` at word
``((q div banks) mod (D/banks))·CB + cb``. With one bank (``SIMD`` divides ``C``) a beat is one
word; in parallel-window mode (``SIMD = banks·C``, ``L = C``) a beat is ``banks`` consecutive
pixels of one kernel row, which lie in distinct banks, rotated into lane order.

Writer: takes input beats while the buffer has room: the pixel it writes may be at most
``D − 1`` past the oldest pixel the current or a later window needs (the *release point*,
``(top, left)`` clipped to the image, or column 0 while the next output row still starts on the
same clipped row). It may run into the next image, but not finish it while windows of the
current one are still leaving (a one-bit image toggle then tells the two apart).

Reader: a window leaves when every pixel it needs is written (the last window of an image
waits for the whole image); then its ``KH·(KW/banks)·CB`` beats leave back to back in
``(ky, kx, c)`` order, one per cycle while the output is ready. Padding positions (outside the
image) carry the op's ``pad_code`` in every lane; they are made here, never stored or streamed.
Read addresses follow pointers kept as ``(word, bank)`` pairs that step by constants
(``+banks`` pixels per beat, ``+W`` per kernel row, ``+SW`` per window, ``+SH·W`` per output row,
``+H·W`` per image; word addresses pre-scaled by the words per pixel), and a window's release
point and needed pixels are registers loaded from per-row and per-column tables
(:meth:`~lowbit.sw.ops.SlidingWindowOp.window_tables`), so no divider or multiplier sits on
any path (an earlier version multiplied by ``W`` there: 25 MHz on ECP5, two DSPs).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from lowbit.sw.ops import SlidingWindowOp

from .simmodel import check_model

__all__ = ["SlidingWindowUnit"]


class _Pointer:
    """A pixel index modulo ``D`` as registers ``(word, bank)``: ``word`` = ``((q div banks) mod
    (D/banks))·scale`` (the address of the pixel's first word in its bank, ``scale`` = words per
    pixel, so no multiplier sits on the address path) and ``bank`` = ``q mod banks``; constant
    steps are computed combinationally (an add and a wrap)."""

    def __init__(self, name: str, init: int, depth: int, banks: int, scale: int = 1):
        self.depth, self.banks, self.scale = depth, banks, scale
        self.words = depth // banks * scale  # the wrap of ``word``
        init %= depth
        self.word = Signal(range(max(self.words, 2)), name=f"{name}_word", init=init // banks * scale)
        self.bank = Signal(range(max(banks, 2)), name=f"{name}_bank", init=init % banks)

    def plus(self, m: Module, step: int, name: str) -> tuple[Signal, Signal]:
        """``(word, bank)`` of this pointer plus ``step`` pixels (mod D)."""
        step %= self.depth
        dw, db = divmod(step, self.banks)
        bank_sum = self.bank + db
        carry = Signal(name=f"{name}_carry")
        m.d.comb += carry.eq(bank_sum >= self.banks)
        word_sum = self.word + dw * self.scale + Mux(carry, self.scale, 0)
        word, bank = Signal.like(self.word, name=f"{name}_word"), Signal.like(self.bank, name=f"{name}_bank")
        m.d.comb += [
            bank.eq(Mux(carry, bank_sum - self.banks, bank_sum)),
            word.eq(Mux(word_sum >= self.words, word_sum - self.words, word_sum)),
        ]
        return word, bank

    def load(self, value: tuple[Signal, Signal]) -> list:
        return [self.word.eq(value[0]), self.bank.eq(value[1])]


def _table(values, shape) -> Array:
    """A constant table (one entry per output row or column), looked up with a small multiplexer."""
    return Array(Const(int(v), shape) for v in values)


class SlidingWindowUnit(wiring.Component):
    """The sliding window of a folded :class:`~lowbit.sw.ops.SlidingWindowOp` (module docstring).

    Members
    -------
    i : ``In(stream.Signature(unsigned(in_lanes·bits)))``, one word of a pixel per beat
    o : ``Out(stream.Signature(unsigned(simd·bits)))``, one im2col beat
    """

    def __init__(self, op: SlidingWindowOp, *, model: str = "synthesis"):
        if not isinstance(op, SlidingWindowOp) or not op.folded:
            raise TypeError(f"op must be a folded SlidingWindowOp, not {op!r}")
        check_model(model)  # nothing to model differently: the window only moves codes
        self._op = op
        super().__init__({
            "i": In(stream.Signature(unsigned(op.in_stream.width))),
            "o": Out(stream.Signature(unsigned(op.out_stream.width))),
        })

    def elaborate(self, platform):
        m = Module()
        op, layer, fold = self._op, self._op.layer, self._op.fold
        H, W, C = layer.in_shape
        OH, OW, _ = layer.out_shape
        (KH, KW), (SH, SW), (PH, PW) = layer.kernel, layer.stride, layer.padding
        L, B, CB = fold.in_lanes, op.banks, op.channel_beats
        KB = KW // B  # beats per kernel row (per channel beat)
        D, HW = op.buffer_pixels, H * W
        bank_pixels = D // B
        word_bits = L * layer.in_format.bits
        pad_word = Cat(*(Const(op.pad_code, layer.in_format.bits) for _ in range(L)))

        banks = [Memory(shape=unsigned(word_bits), depth=bank_pixels * CB, init=[]) for _ in range(B)]
        for b, mem in enumerate(banks):
            m.submodules[f"line_buffer_{b}"] = mem
        wports = [mem.write_port() for mem in banks]
        rports = [mem.read_port() for mem in banks]

        # ---- reader counters: which window, which beat of it ----
        oy, ox = Signal(range(max(OH, 2))), Signal(range(max(OW, 2)))
        ky, kb, cb = Signal(range(max(KH, 2))), Signal(range(max(KB, 2))), Signal(range(max(CB, 2)))
        top = Signal(signed(max(H, PH, SH * OH).bit_length() + 2), init=-PH)
        left = Signal(signed(max(W, PW, SW * OW).bit_length() + 2), init=-PW)
        rimg = Signal()
        start = -PH * W - PW  # pixel index of the first window's (top, left), relative to its image
        p_first = _Pointer("p_first", HW + start, D, B, CB)  # (top, left) of the next image's first window
        p_row = _Pointer("p_row", start, D, B, CB)    # (top, left) of the output row's first window
        p_win = _Pointer("p_win", start, D, B, CB)    # (top, left) of this window
        p_krow = _Pointer("p_krow", start, D, B, CB)  # (top + ky, left)
        p_beat = _Pointer("p_beat", start, D, B, CB)  # (top + ky, left + kb·banks)

        # ---- writer counters ----
        wq = Signal(range(HW + 1))   # pixels of the writer's image written
        wcb = Signal(range(max(CB, 2)))
        wimg = Signal()
        w_ptr = _Pointer("w_ptr", 0, D, B, CB)
        ahead = Signal()
        m.d.comb += ahead.eq(wimg != rimg)

        # ---- release point and pixels needed of this window, registered (op.window_tables) ----
        pix = signed(max(HW, D).bit_length() + 3)
        t = op.window_tables()
        release = Signal(pix, init=int(t["rel_row"][0] + (t["rel_col"][0] if t["rel_flag"][0] else 0)))
        need = Signal(pix, init=HW if OH * OW == 1 else int(t["need_row"][0] + t["need_col"][0]))
        # the next window's (oy, ox), and its entries, loaded when this window's last beat leaves
        last_col, last_row = ox == OW - 1, oy == OH - 1
        oy_next = Mux(last_col, Mux(last_row, 0, oy + 1), oy)
        ox_next = Mux(last_col, 0, ox + 1)
        rel_row, rel_flag, rel_col = _table(t["rel_row"], pix), _table(t["rel_flag"], 1), _table(t["rel_col"], pix)
        need_row, need_col = _table(t["need_row"], pix), _table(t["need_col"], pix)
        release_next, need_next = Signal(pix), Signal(pix)
        next_is_last = (oy_next == OH - 1) & (ox_next == OW - 1)
        m.d.comb += [
            release_next.eq(rel_row[oy_next] + Mux(rel_flag[oy_next], rel_col[ox_next], 0)),
            need_next.eq(Mux(next_is_last, HW, need_row[oy_next] + need_col[ox_next])),
        ]
        avail = Signal(pix)
        m.d.comb += avail.eq(Mux(ahead, HW, wq))
        window_ready = avail >= need

        # ---- writer: one word per beat while the pixel fits behind the release point ----
        occupied = Signal(pix)
        m.d.comb += occupied.eq(Mux(ahead, HW + wq, wq) - release)
        can_write = (occupied < D) & ~(ahead & (wq == HW - 1))
        m.d.comb += self.i.ready.eq(can_write)
        write = self.i.valid & self.i.ready
        for b, port in enumerate(wports):
            m.d.comb += [port.addr.eq(w_ptr.word + wcb), port.data.eq(self.i.payload),
                         port.en.eq(write & (w_ptr.bank == b))]
        with m.If(write):
            with m.If(wcb == CB - 1):
                m.d.sync += [wcb.eq(0), *w_ptr.load(w_ptr.plus(m, 1, "w_next"))]
                with m.If(wq == HW - 1):
                    m.d.sync += [wq.eq(0), wimg.eq(~wimg)]
                with m.Else():
                    m.d.sync += wq.eq(wq + 1)
            with m.Else():
                m.d.sync += wcb.eq(wcb + 1)

        # ---- reader: one beat per cycle while the window is ready and the output free ----
        out_free = ~self.o.valid | self.o.ready
        issue = Signal()
        m.d.comb += issue.eq(window_ready & out_free)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(issue):
            m.d.sync += self.o.valid.eq(1)

        # bank b holds pixel p_beat + ((b - bank) mod banks): the next word when b < bank
        for b, port in enumerate(rports):
            if B > 1:
                word = p_beat.word + Mux(p_beat.bank > b, CB, 0)
                word_w = Signal.like(p_beat.word, name=f"read_word_{b}")
                m.d.comb += word_w.eq(Mux(word >= p_beat.words, word - p_beat.words, word))
            else:
                word_w = p_beat.word
            m.d.comb += [port.addr.eq(word_w + cb), port.en.eq(issue)]

        # padding mask and lane rotation of the beat being read, registered beside the data
        row = top + ky
        col0 = Signal.like(left, init=-PW)  # left + kb·banks, stepped with kb
        pad = Signal(B)
        for j in range(B):
            col = col0 + j
            m.d.comb += pad[j].eq((row < 0) | (row > H - 1) | (col < 0) | (col > W - 1))
        pad_r = Signal(B)
        rot_r = Signal.like(p_beat.bank)
        with m.If(issue):
            m.d.sync += [pad_r.eq(pad), rot_r.eq(p_beat.bank)]
        data = Array(port.data for port in rports)
        lanes = []
        for j in range(B):
            sel = rot_r + j
            word = data[Mux(sel >= B, sel - B, sel)] if B > 1 else rports[0].data
            lanes.append(Mux(pad_r[j], pad_word, word))
        m.d.comb += self.o.payload.eq(Cat(*lanes))

        # ---- step the counters and pointers after each beat ----
        with m.If(issue):
            with m.If(cb != CB - 1):
                m.d.sync += cb.eq(cb + 1)
            with m.Else():
                m.d.sync += cb.eq(0)
                with m.If(kb != KB - 1):
                    m.d.sync += [kb.eq(kb + 1), col0.eq(col0 + B), *p_beat.load(p_beat.plus(m, B, "beat_next"))]
                with m.Else():
                    m.d.sync += [kb.eq(0), col0.eq(left)]
                    with m.If(ky != KH - 1):
                        nxt = p_krow.plus(m, W, "krow_next")
                        m.d.sync += [ky.eq(ky + 1), *p_krow.load(nxt), *p_beat.load(nxt)]
                    with m.Else():
                        m.d.sync += [ky.eq(0), release.eq(release_next), need.eq(need_next)]
                        with m.If(ox != OW - 1):
                            nxt = p_win.plus(m, SW, "win_next")
                            m.d.sync += [ox.eq(ox + 1), left.eq(left + SW), col0.eq(left + SW), *p_win.load(nxt),
                                         *p_krow.load(nxt), *p_beat.load(nxt)]
                        with m.Else():
                            m.d.sync += [ox.eq(0), left.eq(-PW), col0.eq(-PW)]
                            with m.If(oy != OH - 1):
                                nxt = p_row.plus(m, SH * W, "row_next")
                                m.d.sync += [oy.eq(oy + 1), top.eq(top + SH), *p_row.load(nxt), *p_win.load(nxt),
                                             *p_krow.load(nxt), *p_beat.load(nxt)]
                            with m.Else():
                                first = (p_first.word, p_first.bank)
                                m.d.sync += [oy.eq(0), top.eq(-PH), rimg.eq(~rimg),
                                             *p_first.load(p_first.plus(m, HW, "first_next")),
                                             *p_row.load(first), *p_win.load(first), *p_krow.load(first),
                                             *p_beat.load(first)]
        return m
