"""Packing: the bit order, the folded weight layout, parameter words."""

import time

import numpy as np
import pytest

from lowbit.sw.formats import parse_format
from lowbit.sw.ir import DenseLayer
from lowbit.sw.pack import (LANE_ORDER, ParamLayout, check_fold, describe_encoding, pack_fields, pack_words,
                            param_banks, params_from_banks, unpack_fields, unpack_words, weight_banks,
                            weights_from_banks)
from lowbit.sw.requant import RequantParams
from lowbit.sw.specs import RequantSpec

RNG_SEED = 20240611


def reference_pack(codes, bits):
    """Word-by-word Python reference of the bit order."""
    return [sum(int(c) << (k * bits) for k, c in enumerate(row)) for row in np.asarray(codes).reshape(-1, np.shape(codes)[-1])]


# ---- bit order -----------------------------------------------------------------------------
def test_pack_words_lane_order_lsb_first():
    assert pack_words([[1, 2, 3]], 4) == [0x321]
    assert pack_words([[5, 1, 7]], 3) == [5 | 1 << 3 | 7 << 6]
    assert pack_words([[1], [0], [1]], 1) == [1, 0, 1]
    assert LANE_ORDER == "lane k at bits [k*b,(k+1)*b), LSB first"


@pytest.mark.parametrize("lanes,bits", [(5, 3), (7, 3), (1, 1), (13, 5), (26, 5), (16, 4), (1, 64), (3, 64),
                                        (4, 16)])
def test_pack_unpack_round_trip(lanes, bits):
    # word widths 15, 21, 1, 65, 130, 64, 64, 192, 64
    rng = np.random.default_rng(RNG_SEED + lanes * 100 + bits)
    codes = rng.integers(0, 1 << bits, size=(37, lanes), dtype=np.uint64)
    codes[0] = (1 << bits) - 1  # all ones: the top bit of every lane
    words = pack_words(codes, bits)
    assert words == reference_pack(codes, bits)
    assert all(isinstance(w, int) for w in words)
    assert max(words).bit_length() == lanes * bits
    back = unpack_words(words, lanes, bits)
    assert back.dtype == np.uint64 and back.shape == (37, lanes)
    np.testing.assert_array_equal(back, codes)


def test_pack_words_flattens_leading_axes():
    codes = np.arange(24).reshape(2, 3, 4) % 8
    assert pack_words(codes, 3) == reference_pack(codes.reshape(6, 4), 3)


def test_pack_words_refuses_bad_codes():
    with pytest.raises(ValueError, match=r"codes must hold unsigned codes .* IntFormat.encode .*not -1"):
        pack_words([[1, -1]], 4)
    with pytest.raises(ValueError, match=r"codes must hold codes in 0..2\^3-1, not 8"):
        pack_words([[8, 1]], 3)
    with pytest.raises(ValueError, match=r"bits must be an integer in 1..64, not 0"):
        pack_words([[0]], 0)
    with pytest.raises(ValueError, match=r"must be an array of unsigned integer codes, not dtype float64"):
        pack_words([[0.5]], 4)


def test_unpack_words_refuses_wide_words():
    with pytest.raises(ValueError, match=r"words\[1\] must fit in 6 unsigned bits, not 0x40"):
        unpack_words([1, 64], 2, 3)
    with pytest.raises(ValueError, match=r"words\[0\] must be a non-negative"):
        unpack_words([-1], 2, 3)


def test_pack_fields_mixed_widths():
    # fields 3, 0, 62 bits → 65-bit words; bit 64 is the top of the last field
    cols = [np.array([5, 7]), np.zeros(2, np.uint64), np.array([1, (1 << 62) - 1], dtype=np.uint64)]
    words = pack_fields(cols, [3, 0, 62])
    assert words == [5 | 1 << 3, 7 | ((1 << 62) - 1) << 3]
    back = unpack_fields(words, [3, 0, 62])
    for a, b in zip(back, cols):
        np.testing.assert_array_equal(a, b.astype(np.uint64))


# ---- weights -------------------------------------------------------------------------------
W4 = np.array([[1, -2, 3, -4],
               [5, 6, 7, -8],
               [0, -1, 2, -3],
               [4, 5, -6, 7]])


def test_weight_banks_known_example():
    layer = DenseLayer(W4, "s4", "u2", name="tiny")
    banks = weight_banks(layer, pe=2, simd=2)
    # bank 0 = rows 0, 2; bank 1 = rows 1, 3; address nf*SF + sf; lane 0 in the low nibble
    assert banks == [[0xE1, 0xC3, 0xF0, 0xD2],
                     [0x65, 0x87, 0x54, 0x7A]]
    np.testing.assert_array_equal(weights_from_banks(banks, 4, 4, 2, 2, "s4"), W4)


def test_weight_banks_extreme_folds():
    layer = DenseLayer(W4, "s4", "u2")
    assert weight_banks(layer, 1, 4) == [[0xC3E1, 0x8765, 0xD2F0, 0x7A54]]
    full = weight_banks(layer, 4, 1)
    assert [len(b) for b in full] == [4, 4, 4, 4]
    assert full[3] == [4, 5, 0xA, 7]


@pytest.mark.parametrize("fmt", ["bipolar", "ternary", "pow2_4", "u3", "s5", "s16"])
@pytest.mark.parametrize("pe,simd", [(1, 1), (3, 5), (6, 15), (2, 3)])
def test_weight_banks_round_trip(fmt, pe, simd):
    f = parse_format(fmt)
    rng = np.random.default_rng(RNG_SEED)
    w = rng.choice(f.values(), size=(6, 15))
    layer = DenseLayer(w, f, "u2")
    banks = weight_banks(layer, pe, simd)
    assert len(banks) == pe and all(len(b) == (6 // pe) * (15 // simd) for b in banks)
    assert max(max(b) for b in banks) < 1 << (simd * f.bits)
    # every word agrees with the definition W[nf*PE + p, sf*SIMD + k] in lane k
    sf_n = 15 // simd
    codes = f.encode(w)
    for p, bank in enumerate(banks):
        for addr, word in enumerate(bank):
            nf, sf = divmod(addr, sf_n)
            lanes = codes[nf * pe + p, sf * simd:(sf + 1) * simd]
            assert word == sum(int(c) << (k * f.bits) for k, c in enumerate(lanes))
    np.testing.assert_array_equal(weights_from_banks(banks, 6, 15, pe, simd, f), w)


def test_bipolar_bank_bits():
    layer = DenseLayer(np.array([[1, -1, -1, 1]]), "bipolar", "bipolar")
    assert weight_banks(layer, 1, 4) == [[0b1001]]


def test_fold_errors_name_parameter_value_size_and_divisors():
    layer = DenseLayer(np.ones((6, 10), np.int64), "s2", "u2", name="fc1")
    with pytest.raises(ValueError, match=r"^pe must be a divisor of the 6 rows \(outputs\) of layer 'fc1' "
                                         r"\(6×10; allowed pe: 1, 2, 3, 6\), not 4$"):
        weight_banks(layer, 4, 2)
    with pytest.raises(ValueError, match=r"^simd must be a divisor of the 10 columns \(inputs\) of layer 'fc1' "
                                         r"\(6×10; allowed simd: 1, 2, 5, 10\), not 3$"):
        weight_banks(layer, 2, 3)
    with pytest.raises(ValueError, match=r"pe must be a divisor .* not 0$"):
        check_fold(6, 10, 0, 1)
    with pytest.raises(ValueError, match=r"banks must hold pe=2 memories, not 1"):
        weights_from_banks([[0]], 6, 10, 2, 2, "s2")
    with pytest.raises(ValueError, match=r"bank 0 must hold NF·SF = 15 words, not 1"):
        weights_from_banks([[0], [0]], 6, 10, 2, 2, "s2")


def test_pack_784x256_is_fast():
    rng = np.random.default_rng(RNG_SEED)
    w = rng.integers(-8, 8, size=(256, 784))
    layer = DenseLayer(w, "s4", "u4")
    t0 = time.perf_counter()
    banks = weight_banks(layer, 16, 16)
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.5, f"packing took {elapsed:.3f} s"
    assert len(banks) == 16 and len(banks[0]) == 16 * 49
    np.testing.assert_array_equal(weights_from_banks(banks, 256, 784, 16, 16, "s4"), w)


# ---- parameters ----------------------------------------------------------------------------
def small_layer(requant=True):
    rq = RequantParams("u4", shift=np.array([0, 1, 2, 3]), multiplier=np.array([3, 1, 2, 7])) if requant else None
    return DenseLayer(np.ones((4, 2), np.int64), "s2", "u2", bias=np.array([-1, 2, -3, 4]), requant=rq, name="p")


def test_param_banks_known_example():
    layout = ParamLayout(bias_bits=4, mult_bits=3, shift_bits=2)
    assert layout.width == 9
    banks = param_banks(small_layer(), 2, layout)
    # bank 0: channels 0, 2; bank 1: channels 1, 3; bias [3:0], multiplier [6:4], shift [8:7]
    assert banks == [[0x03F, 0x12D], [0x092, 0x1F4]]
    cp = params_from_banks(banks, 4, 2, layout)
    np.testing.assert_array_equal(cp.bias, [-1, 2, -3, 4])
    np.testing.assert_array_equal(cp.multiplier, [3, 1, 2, 7])
    np.testing.assert_array_equal(cp.shift, [0, 1, 2, 3])


def test_param_banks_from_requant_spec():
    spec = RequantSpec(lanes=2, acc_bits=8, out_format="u4", bias_bits=4, mult_bits=3, shift_bits=2)
    assert param_banks(small_layer(), 2, spec) == [[0x03F, 0x12D], [0x092, 0x1F4]]
    with pytest.raises(ValueError, match=r"spec.lanes must equal pe=4 .*, not 2"):
        param_banks(small_layer(), 4, spec)


def test_param_banks_raw_logits_store_bias_only():
    layer = small_layer(requant=False)
    layout = ParamLayout.for_layer(layer)
    assert layout == ParamLayout(4, 0, 0)
    banks = param_banks(layer, 1, layout)
    assert banks == [[0xF, 0x2, 0xD, 0x4]]
    cp = params_from_banks(banks, 4, 1, layout)
    np.testing.assert_array_equal(cp.bias, [-1, 2, -3, 4])
    assert cp.multiplier is None and cp.shift is None
    # A spec with a shift field stores shift 0 there.
    spec = RequantSpec(lanes=1, acc_bits=8, out_format="s8", bias_bits=4, shift_bits=2)
    assert param_banks(layer, 1, spec) == [[0xF, 0x2, 0xD, 0x4]]
    assert params_from_banks(param_banks(layer, 1, spec), 4, 1, spec).shift.tolist() == [0, 0, 0, 0]


def test_param_banks_pure_shift_and_wide_bias():
    rng = np.random.default_rng(RNG_SEED)
    bias = rng.integers(-(1 << 40), 1 << 40, size=12)
    rq = RequantParams("s4", shift=rng.integers(0, 49, size=12))
    layer = DenseLayer(np.ones((12, 3), np.int64), "s2", "s4", bias=bias, requant=rq)
    for layout in (ParamLayout.for_layer(layer), ParamLayout(64, 16, 6)):
        banks = param_banks(layer, 3, layout)
        cp = params_from_banks(banks, 12, 3, layout)
        np.testing.assert_array_equal(cp.bias, bias)
        np.testing.assert_array_equal(cp.shift, rq.shift)
        if layout.mult_bits:
            np.testing.assert_array_equal(cp.multiplier, np.ones(12))  # no multiplier ⇒ 1


def test_param_banks_refuse_narrow_fields():
    layer = small_layer()
    with pytest.raises(ValueError, match=r"bias_bits must be at least 4 for the biases of layer 'p' \(-3..4\), not 3"):
        param_banks(layer, 2, ParamLayout(3, 3, 2))
    with pytest.raises(ValueError, match=r"mult_bits must be at least 3 for the multipliers of layer 'p' "
                                         r"\(max 7\), not 2"):
        param_banks(layer, 2, ParamLayout(4, 2, 2))
    with pytest.raises(ValueError, match=r"mult_bits must be at least 3 .*, not 0"):
        param_banks(layer, 2, ParamLayout(4, 0, 2))
    with pytest.raises(ValueError, match=r"shift_bits must be at least 2 for the shifts of layer 'p' \(max 3\), not 1"):
        param_banks(layer, 2, ParamLayout(4, 3, 1))
    with pytest.raises(ValueError, match=r"pe must be a divisor of the 4 rows"):
        param_banks(layer, 3, ParamLayout(4, 3, 2))
    with pytest.raises(ValueError, match=r"mult_bits must be an integer in 0..16, not 17"):
        ParamLayout(4, 17, 2)


def test_param_layout_fields():
    assert ParamLayout(8, 0, 4).fields() == [
        {"name": "bias", "lsb": 0, "bits": 8, "encoding": "signed two's complement"},
        {"name": "shift", "lsb": 8, "bits": 4, "encoding": "unsigned (right shift)"},
    ]


def test_describe_encoding():
    assert describe_encoding("bipolar") == "bipolar: bit 1 = +1, bit 0 = -1"
    assert describe_encoding("ternary").startswith("ternary: two's complement 2-bit, 01=+1, 11=-1, 00=0")
    assert describe_encoding("s4") == "signed: two's complement 4-bit, -8..7"
    assert describe_encoding("u3") == "unsigned: plain binary 3-bit, 0..7"
    assert describe_encoding("pow2_4").startswith("pow2: bit 3 = sign (1 = negative), bits [2:0] = exponent e")
