"""The PE×SIMD multiply-accumulate array."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from lowbit.sw.specs import MacArraySpec, ProductKind

from .arith import activation_multiples, adder_tree, decode, digit_multiply, lane, product, xnor_agree, xnor_group_dot
from .simmodel import behind_valid, check_model

__all__ = ["MacArray", "mac_input_layout"]


def mac_input_layout(spec: MacArraySpec) -> data.StructLayout:
    """Beat of the input stream: SIMD activation codes, PE×SIMD weight codes, end-of-vector.

    Weight lane ``p·SIMD + s`` (row ``p``, column ``s``) and activation lane ``s`` follow
    the one bit order: lane k at bits ``[k·b, (k+1)·b)``.
    """
    return data.StructLayout({
        "x": spec.act_word_bits,
        "w": spec.weight_word_bits,
        "last": 1,
    })


class MacArray(wiring.Component):
    """PE rows of SIMD multiply-accumulate lanes with a stream in and a stream out.

    Every accepted beat adds, for each row ``p``, ``Σ_s w[p,s]·x[s]`` to accumulator ``p``;
    the beat flagged ``last`` completes the vector and the ``pe`` sums leave on ``o``. The
    accumulators double as the output register, so a vector of ``n`` beats costs ``n``
    cycles; the result appears ``LATENCY`` (5) cycles after its last beat is accepted
    (operands, products, half the adder tree, the rest of it, then the accumulator). While a result waits on a
    stalled ``o``, ``i`` is not ready (backpressure passes through).

    Parameters
    ----------
    spec : MacArraySpec
        Formats, PE, SIMD and accumulator width (already checked against the worst case).
    model : "synthesis" (default) or "simulation"
        See :data:`lowbit.hw.simmodel.MODELS`: the simulation model multiplies with ``*`` and its
        data registers hold in bubbles; the valid, first and last bits move exactly alike.
    backpressure : bool
        True (default): ``o`` may stall, and a stall holds every stage (one stall signal).
        False: both streams are ``always_ready``; every stage moves every cycle and the user
        guarantees a place for each result (the matrix-vector unit does, with credits), so no
        enable fans out to the pipeline's registers.

    Members
    -------
    i : ``In(stream.Signature(mac_input_layout(spec)))``
    o : ``Out(stream.Signature(ArrayLayout(signed(acc_bits), pe)))``
    """

    def __init__(self, spec: MacArraySpec, *, model: str = "synthesis", backpressure: bool = True):
        if not isinstance(spec, MacArraySpec):
            raise TypeError(f"spec must be a MacArraySpec, not {spec!r}")
        self._spec = spec
        self._model = check_model(model)
        self._backpressure = bool(backpressure)
        free = not self._backpressure
        super().__init__({
            "i": In(stream.Signature(mac_input_layout(spec), always_ready=free)),
            "o": Out(stream.Signature(data.ArrayLayout(signed(spec.acc_bits), spec.pe), always_ready=free)),
        })

    @property
    def spec(self) -> MacArraySpec:
        return self._spec

    def row_terms(self, p: int, w: Value, x: Value) -> list[Value]:
        """The per-lane terms of row ``p`` from the weight word ``w`` and activation word ``x``.

        The products ``w[p,s]·x[s]``; for bipolar × bipolar the XNOR word (one bit per lane),
        which :meth:`tree_stage` 0 sums. ``x`` is what :meth:`operand_x` makes of the
        activation word.
        """
        spec = self._spec
        wf, af = spec.weight_format, spec.act_format
        wb, ab = wf.bits, af.bits
        w_row = w[p * spec.simd * wb:(p + 1) * spec.simd * wb]
        if spec.product is ProductKind.XNOR:
            return [xnor_agree(w_row, x[:spec.simd])]
        if spec.product is ProductKind.MULTIPLY and self._model == "simulation":  # x[s][1] is the activation
            return [decode(lane(w_row, s, wb), wf) * x[s][1] for s in range(spec.simd)]
        if spec.product is ProductKind.MULTIPLY:  # x: the per-lane multiples from operand_x
            return [digit_multiply(lane(w_row, s, wb), wf, x[s]) for s in range(spec.simd)]
        return [product(lane(w_row, s, wb), lane(x, s, ab), wf, af) for s in range(spec.simd)]

    def operand_x(self, x_word: Value) -> "Value | list[dict[int, Value]]":
        """What the operand register holds of the activations: the word itself, or for a
        general multiplier each lane's multiples (:func:`activation_multiples`), computed once
        per lane for all PE rows."""
        spec = self._spec
        if spec.product is not ProductKind.MULTIPLY:
            return x_word
        if self._model == "simulation":
            return [{1: decode(lane(x_word, s, spec.act_format.bits), spec.act_format)} for s in range(spec.simd)]
        return [activation_multiples(lane(x_word, s, spec.act_format.bits), spec.act_format)
                for s in range(spec.simd)]

    def tree_stage(self, k: int, values: list[Value]) -> list[Value]:
        """Adder-tree stage ``k`` of a row: sums over groups of ``spec.tree_fanins[k]`` values.

        Stage 0 of an XNOR row takes the XNOR word and gives each group's Σ w·x directly
        (:func:`xnor_group_dot`), so no stage needs the ``2·count − n`` correction.
        """
        g = self._spec.tree_fanins[k]
        if k == 0 and self._spec.product is ProductKind.XNOR:
            agree = values[0]
            return [xnor_group_dot(agree[i:i + g]) for i in range(0, self._spec.simd, g)]
        return [adder_tree(values[i:i + g]) for i in range(0, len(values), g)]

    def row_sum(self, terms: list[Value]) -> Value:
        """Σ_s w[p,s]·x[s] from the terms of one row, combinationally (every tree stage)."""
        values = terms
        for k in range(len(self._spec.tree_fanins)):
            values = self.tree_stage(k, values)
        return values[0]

    def row_dot(self, p: int, w: Value, x: Value) -> Value:
        """Σ_s w[p,s]·x[s] of row ``p`` for weight word ``w`` and activation word ``x``, combinationally."""
        return self.row_sum(self.row_terms(p, w, self.operand_x(x)))

    def elaborate(self, platform):
        m = Module()
        spec = self._spec
        # Register stages, each with one kind of logic: the operands (0: wherever they come
        # from, a block RAM or another block, the multipliers start from a local flip-flop; on
        # ECP5 the route into them was the critical path), the multipliers (1), the adder tree
        # with a register every two levels (2 .. 1 + stages), the accumulator (which doubles as
        # the output register). Registers right behind the LUTs that drive them cost flip-flops,
        # not LUTs.
        stages = len(spec.tree_fanins)
        n_flags = 2 + stages  # valid/first/last of every stage before the accumulator
        valid = [Signal(name=f"s{k}_valid") for k in range(n_flags)]
        first = [Signal(name=f"s{k}_first") for k in range(n_flags)]
        last = [Signal(name=f"s{k}_last") for k in range(n_flags)]
        w_op = Signal(spec.weight_word_bits, name="w_operand")
        x_next = self.operand_x(self.i.payload.x)
        if isinstance(x_next, list):
            x_op = [{k: Signal(v.shape(), name=f"x{s}_times_{k}".replace("-", "minus")) for k, v in lane_m.items()}
                    for s, lane_m in enumerate(x_next)]
            x_load = [x_op[s][k].eq(v) for s, lane_m in enumerate(x_next) for k, v in lane_m.items()]
        else:
            x_op = Signal(spec.act_word_bits, name="x_operand")
            x_load = [x_op.eq(x_next)]
        rows = []
        for p in range(spec.pe):
            row = self.row_terms(p, w_op, x_op)
            terms = [Signal(t.shape(), name=f"term_{p}_{k}") for k, t in enumerate(row)]
            tree = []  # the registers of each adder-tree stage; the last holds the row's dot product
            values = terms
            for k in range(stages):
                sums = self.tree_stage(k, values)
                values = [Signal(v.shape(), name=f"sum{k}_{p}_{j}") for j, v in enumerate(sums)]
                tree.append((sums, values))
            rows.append((row, terms, tree))
        fresh = Signal(init=1)  # the next accepted beat starts a new vector

        # One stall signal for the whole pipeline: every stage moves when the output register
        # is free. (Letting each stage fill its own bubble chains a ready term per stage; at
        # full rate there are no bubbles, and that chain, fanned out to every register's
        # enable, was the block's critical path on ECP5.) Registers load even in a bubble:
        # only the valid bits and the accumulator care whether a beat is real.
        if self._backpressure:
            advance = ~self.o.valid | self.o.ready
            m.d.comb += self.i.ready.eq(advance)
        else:
            advance = Const(1)

        with m.If(advance):
            m.d.sync += [valid[0].eq(self.i.valid), first[0].eq(fresh), last[0].eq(self.i.payload.last)]
            with m.If(self.i.valid):
                m.d.sync += fresh.eq(self.i.payload.last)
            # The simulation model loads a data register only behind a valid beat (Verilator
            # then skips the arithmetic of idle layers); nothing reads it otherwise.
            when = behind_valid(m, self._model)
            with when(self.i.valid):
                m.d.sync += [w_op.eq(self.i.payload.w), *x_load]
            for k in range(1, n_flags):
                m.d.sync += [valid[k].eq(valid[k - 1]), first[k].eq(first[k - 1]), last[k].eq(last[k - 1])]
            for row, terms, tree in rows:
                with when(valid[0]):
                    m.d.sync += [r.eq(t) for r, t in zip(terms, row)]
                for k, (sums, regs) in enumerate(tree):
                    with when(valid[1 + k]):
                        m.d.sync += [r.eq(v) for r, v in zip(regs, sums)]
            with m.If(valid[-1]):
                for p, (_, _, tree) in enumerate(rows):
                    acc = self.o.payload[p]
                    # Width is safe to truncate: spec.acc_bits covers every sum of the vector.
                    m.d.sync += acc.eq(tree[-1][1][0] + Mux(first[-1], 0, acc))
            m.d.sync += self.o.valid.eq(valid[-1] & last[-1])
        return m
