"""What a sweep covers: :class:`SweepConfig`, the named configurations, the match threshold."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["SweepConfig", "CONFIGS", "CNN_CONFIGS", "named_config", "resolve_dataset", "parse_match", "COST_FAMILY",
           "NOMINAL_FMAX_MHZ"]

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
        Float32 preset (:data:`lowbit.sw.train.PRESET_NAMES`: the MLPs ``tfc``, ``sfc``, ``lfc``
        and the CNNs ``lenet``, ``cnn_digits``), reused from ``model_dir`` or trained.
    dataset : str
        ``fashion-mnist``, ``mnist``, ``digits`` or ``auto`` (:func:`resolve_dataset`: a CNN
        preset takes the images it is made for, 28×28 or 8×8).
    methods : tuple of str
        Post-training quantizers (keys of :data:`lowbit.sw.quant.METHODS`).
    bits : tuple of int
        Bit widths ``b``: ``W{b}A{b}`` for pow2/scaled/dfp, ``W ternary A{b}`` for ternary,
        ``W1 A{b}`` (bipolar at ``b = 1``) for binary; widths a method cannot take are skipped.
    lanes : tuple of int
        MAC-lane budgets for :func:`lowbit.sw.fold.auto_fold` (the folding axis). A CNN's
        layers differ in work by 100×, so the same budget means very different rates for an
        MLP and a CNN: :data:`CNN_CONFIGS` gives each CNN preset budgets of its own.
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
        from ..datasets import DATASETS
        from ..train import PRESET_NAMES

        if self.preset not in PRESET_NAMES:
            raise ValueError(f"preset must be one of {', '.join(PRESET_NAMES)}, not {self.preset!r}")
        if self.dataset not in (*DATASETS, "auto"):
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)} or auto, not {self.dataset!r}")
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

# The named configurations of the CNN presets, used in place of CONFIGS[name] when the sweep's
# preset is one of them (named_config). A CNN's layers differ in work by 100x, so an MLP's lane
# budgets mean nothing there: auto_fold balances the layers for the initiation interval, and the
# budgets below span each CNN's useful range. LeNet at 256/512/1024/2048 lanes folds for about
# 20,480/10,240/5,120/2,989 cycles per image; past about 1,700 lanes the plan no longer changes,
# as the first layer's sliding window (one 5-pixel kernel row per beat) bounds it at 2,989. The
# digits CNN at 16/64/256 lanes: 9,216/1,536/384 cycles.
CNN_CONFIGS = {
    "lenet": {
        # 14 networks × 4 foldings on Fashion-MNIST's 10,000 test images (the golden model takes
        # about 40 s per network; the foldings of one network share its accuracy), 1 synthesized
        # on ECP5-85k (the 25k holds no LeNet), 1 simulated; post-training only: a QAT epoch of
        # LeNet on 60,000 images takes minutes per point (--qat-epochs adds them).
        "default": SweepConfig(preset="lenet", lanes=(256, 512, 1024, 2048), target="ecp5-85k", synth=1,
                               synth_max_lut=20000, sim=1, sim_images=200, qat_epochs=0),
        # pow2 at 2 and 4 bits, 2 foldings, cost model only (2 golden-model runs: 66 s on 2 cores).
        "small": SweepConfig(preset="lenet", methods=("pow2",), bits=(2, 4), lanes=(512, 2048), target="ecp5-85k",
                             synth=0, sim=0, qat_epochs=0, match="float-10"),
    },
    "cnn_digits": {
        # digits (359 test images): 14 networks and the QAT twins (10 epochs) of the 10 at <= 4 bits (seconds
        # each on 1,437 training images) × 3 foldings, 2 synthesized on ECP5-25k, 2 simulated.
        "default": SweepConfig(preset="cnn_digits", lanes=(16, 64, 256), calib=1000, synth=2, sim=2,
                               sim_images=300, qat_epochs=10),
        # 2 methods × 2 widths × 2 foldings, cost model only (seconds).
        "small": SweepConfig(preset="cnn_digits", methods=("pow2", "ternary"), bits=(2, 4), lanes=(16, 64),
                             calib=500, synth=0, sim=0, sim_images=60, qat_epochs=0, match="float-10"),
    },
}


def named_config(name: str = "default", preset: str | None = None) -> SweepConfig:
    """The configuration ``name`` for ``preset``: :data:`CNN_CONFIGS` for a CNN preset, else
    :data:`CONFIGS` (with ``preset`` in place of its MLP when given)."""
    if name not in CONFIGS:
        raise ValueError(f"config must be one of {', '.join(CONFIGS)}, not {name!r}")
    if preset in CNN_CONFIGS:
        return CNN_CONFIGS[preset][name]
    return CONFIGS[name] if preset is None else dataclasses.replace(CONFIGS[name], preset=preset)


# which datasets have images of a size (lowbit.sw.datasets): only for the hint of an error
_DATASETS_OF_SIZE = {(28, 28): "fashion-mnist or mnist", (8, 8): "digits"}


def resolve_dataset(preset: str, dataset: str, data_dir=None) -> tuple[str, str | None]:
    """The dataset a sweep of ``preset`` runs on, and a note saying why (or None); checked to fit.

    ``auto`` is Fashion-MNIST when its files are found, else digits, for an MLP; a CNN preset
    takes the images it is made for (:attr:`lowbit.sw.train.CnnPreset.image`): digits for an
    8×8 one, the default dataset for a 28×28 one. A CNN preset and a dataset of another image
    size are refused before anything is trained (a LeNet does not fit 8×8 images; the digits
    CNN would train on 28×28 ones, but would not be the network its name promises).
    """
    from ..datasets import default_dataset, load_dataset
    from ..train import CNN_PRESETS, PRESETS

    if preset not in CNN_PRESETS:
        return default_dataset(data_dir) if dataset == "auto" else (dataset, None)
    want = tuple(CNN_PRESETS[preset].image)
    given, why = dataset, None
    if dataset == "auto":
        dataset, why = ("digits", None) if want == (8, 8) else default_dataset(data_dir)
    shape = tuple(load_dataset(dataset, data_dir).image_shape)
    if shape != want:
        size = "x".join(map(str, want))
        others = [p for p, c in CNN_PRESETS.items() if tuple(c.image) == shape]
        raise ValueError(
            f"--preset {preset} takes {size} images, but --dataset {given}"
            f"{f' is {dataset} here ({why}), which has' if given != dataset else ' has'} "
            f"{'x'.join(map(str, shape))} images: use --dataset {_DATASETS_OF_SIZE.get(want, f'<one of {size} images>')} "
            f"with --preset {preset}, or keep --dataset {dataset} with --preset {' or '.join(others) + ' or ' if others else ''}"
            f"an MLP preset ({', '.join(PRESETS)})")
    return dataset, why


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
