"""Stand-alone blocks that ``lowbit gen`` emits: the MAC array, the requantizer, and both chained."""

from __future__ import annotations

from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from lowbit.sw.specs import MacArraySpec, RequantSpec

from .mac import MacArray, mac_input_layout
from .requant import Requantizer, requant_output_layout

__all__ = ["MacRequantBlock"]


class MacRequantBlock(wiring.Component):
    """A MAC array feeding its requantizer: beats in, PE requantized codes out.

    The per-PE bias, multiplier and shift are quasi-static inputs (``bias``, ``mult``,
    ``shift``): the requantizer samples them with each finished vector, so change them only
    between vectors. A top that ties them to constants lets synthesis fold them away.

    Parameters
    ----------
    mac : MacArraySpec
    requant : RequantSpec
        ``lanes`` must equal ``mac.pe`` and ``acc_bits`` must equal ``mac.acc_bits``.

    Members
    -------
    i : ``In(stream.Signature(mac_input_layout(mac)))``
    o : ``Out(stream.Signature(requant_output_layout(requant)))``
    bias, shift, mult, offset : ``In(ArrayLayout(..., pe))`` (``mult`` only when ``requant.mult_bits``,
        ``offset`` only when ``requant.offset_bits``)
    """

    def __init__(self, mac: MacArraySpec, requant: RequantSpec):
        if requant.lanes != mac.pe:
            raise ValueError(f"requant.lanes must equal mac.pe ({mac.pe}), not {requant.lanes}")
        if requant.acc_bits != mac.acc_bits:
            raise ValueError(f"requant.acc_bits must equal mac.acc_bits ({mac.acc_bits}), not {requant.acc_bits}")
        self._mac, self._rq = mac, requant
        members = {
            "i": In(stream.Signature(mac_input_layout(mac))),
            "o": Out(stream.Signature(requant_output_layout(requant))),
            "bias": In(data.ArrayLayout(signed(requant.bias_bits), mac.pe)),
            "shift": In(data.ArrayLayout(unsigned(requant.shift_bits), mac.pe)),
        }
        if requant.mult_bits:
            members["mult"] = In(data.ArrayLayout(unsigned(requant.mult_bits), mac.pe))
        if requant.offset_bits:
            members["offset"] = In(data.ArrayLayout(signed(requant.offset_bits), mac.pe))
        super().__init__(members)

    @property
    def mac_spec(self) -> MacArraySpec:
        return self._mac

    @property
    def requant_spec(self) -> RequantSpec:
        return self._rq

    def elaborate(self, platform):
        m = Module()
        m.submodules.mac = mac = MacArray(self._mac)
        m.submodules.requant = rq = Requantizer(self._rq)
        wiring.connect(m, wiring.flipped(self.i), mac.i)
        wiring.connect(m, rq.o, wiring.flipped(self.o))
        m.d.comb += [
            rq.i.valid.eq(mac.o.valid),
            mac.o.ready.eq(rq.i.ready),
            rq.i.payload.acc.eq(mac.o.payload),
            rq.i.payload.bias.eq(self.bias),
            rq.i.payload.shift.eq(self.shift),
        ]
        if self._rq.mult_bits:
            m.d.comb += rq.i.payload.mult.eq(self.mult)
        if self._rq.offset_bits:
            m.d.comb += rq.i.payload.offset.eq(self.offset)
        return m
