"""What a sweep covers: :class:`SweepConfig`, the named configurations, the match threshold."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["SweepConfig", "CONFIGS", "parse_match", "COST_FAMILY", "NOMINAL_FMAX_MHZ"]

# The cost model is calibrated for these families; ECP5 is LUT4 like iCE40, so its LUT4
# coefficients stand in (the yosys points of a sweep show how well).
COST_FAMILY = {"ice40": "ice40", "ecp5": "ice40", "xilinx": "xilinx"}
# fmax for points not placed and routed when the sweep has no nextpnr fmax at all:
# the clock constraints lowbit's nextpnr runs use (lowbit.sw.pnr), and 200 MHz on
# Xilinx 7 series (no open place-and-route there).
NOMINAL_FMAX_MHZ = {"ice40": 50.0, "ecp5": 150.0, "xilinx": 200.0}


@dataclass(frozen=True)
class SweepConfig:
    """What one sweep covers.

    Parameters
    ----------
    preset : str
        Float32 MLP preset (``tfc``, ``sfc``, ``lfc``), reused from ``model_dir`` or trained.
    dataset : str
        ``fashion-mnist``, ``mnist``, ``digits`` or ``auto``.
    methods : tuple of str
        Post-training quantizers (keys of :data:`lowbit.sw.quant.METHODS`).
    bits : tuple of int
        Bit widths ``b``: ``W{b}A{b}`` for pow2/scaled/dfp, ``W ternary A{b}`` for ternary,
        ``W1 A{b}`` (bipolar at ``b = 1``) for binary; widths a method cannot take are skipped.
    lanes : tuple of int
        MAC-lane budgets for :func:`lowbit.sw.fold.auto_fold` (the folding axis).
    target : str
        FPGA target of the synthesized points (:data:`lowbit.sw.synth.TARGETS`); its family
        picks the cost model's coefficients.
    synth : int
        How many points to synthesize (yosys, plus nextpnr where the family has it).
    synth_max_lut : int
        Only points whose cost-model LUTs are at most this are synthesized: yosys time grows
        with the design (a 6k-LUT TFC takes about 2 minutes on ECP5, 1024 lanes far longer).
    sim : int
        How many points to spot-check in Verilator, each on ``sim_images`` test images.
    qat_epochs : int
        0: post-training only; otherwise also quantization-aware points (b ≤ 4) with this many epochs.
    match : str
        Accuracy threshold of the Su et al. comparison: ``"float-5"`` (points below the
        float32 accuracy) or an absolute percentage such as ``"80"``.
    """

    preset: str = "tfc"
    dataset: str = "auto"
    epochs: int = 10
    seed: int = 0
    methods: tuple = ("pow2", "scaled", "ternary", "binary")
    bits: tuple = (1, 2, 4, 8)
    lanes: tuple = (16, 64, 256, 1024)
    calib: int = 2000
    test_images: int = 0            # 0: the whole test set
    target: str = "ecp5-25k"
    synth: int = 4
    synth_max_lut: int = 6000
    sim: int = 2
    sim_images: int = 300
    qat_epochs: int = 2             # QAT points at ≤ 4 bits: PTQ alone leaves 1-2-bit TFC below any match
    match: str = "float-5"
    model_dir: str = "build/models"

    def validate(self) -> "SweepConfig":
        """Check every field (imports the quantizers, hence torch: not done at construction)."""
        from ..quant import METHODS
        from ..synth import TARGETS
        from ..train import PRESETS

        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, not {self.preset!r}")
        for m in self.methods:
            if m not in METHODS:
                raise ValueError(f"methods must be among {', '.join(METHODS)}, not {m!r}")
        if not self.methods:
            raise ValueError("methods must name at least one method, not ()")
        for name, seq, lo in (("bits", self.bits, 1), ("lanes", self.lanes, 1)):
            if not seq or any(not isinstance(v, int) or v < lo for v in seq):
                raise ValueError(f"{name} must be positive integers, not {seq!r}")
        if any(b > 16 for b in self.bits):
            raise ValueError(f"bits must be at most 16, not {max(self.bits)}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {self.target!r}")
        for name in ("synth", "synth_max_lut", "sim", "qat_epochs", "test_images"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be a non-negative integer, not {v!r}")
        if not isinstance(self.sim_images, int) or self.sim_images < 3:
            raise ValueError(f"sim_images must be an integer of at least 3, not {self.sim_images!r}")
        parse_match(self.match, 0.5)  # validates
        return self

    @property
    def family(self) -> str:
        from ..synth import TARGETS
        return TARGETS[self.target].family

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


CONFIGS = {
    # ~10 min on 2 cores: 14 networks × 4 foldings, 4 synthesized (ECP5), 2 simulated.
    "default": SweepConfig(),
    # seconds: digits, TFC, 2 methods × 2 widths × 2 foldings, cost model only.
    "small": SweepConfig(dataset="digits", epochs=40, methods=("scaled", "binary"), bits=(1, 4), lanes=(8, 64),
                         calib=500, synth=0, sim=0, sim_images=60, qat_epochs=0, match="float-10"),
}


def parse_match(text: str, float_accuracy: float) -> float:
    """Accuracy threshold (fraction) from ``"float-N"`` (N points below float32) or ``"P"`` (percent)."""
    s = str(text).strip().lower().replace(" ", "")
    try:
        if s.startswith("float"):
            rest = s[len("float"):]
            return float_accuracy + (float(rest) / 100 if rest else 0.0)  # rest is "-5": signed points
        v = float(s)
    except ValueError:
        raise ValueError(f"match must be 'float-N' (points below float32) or a percentage, not {text!r}") from None
    if not 0 <= v <= 100:
        raise ValueError(f"match must be a percentage in 0..100, not {text!r}")
    return v / 100
