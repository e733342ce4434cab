import pytest

from lowbit.sw.specs import MacArraySpec, RequantSpec


def test_mac_accumulator_width_is_the_worst_case():
    # s4 × u4: products in [-120, 105]; 8 lanes × 4 beats = 32 terms → [-3840, 3360] → 13 bits
    spec = MacArraySpec(pe=8, simd=8, weight_format="s4", act_format="u4", beats=4)
    assert spec.acc_range == (-3840, 3360) and spec.acc_bits == 13
    assert MacArraySpec(pe=1, simd=16, weight_format="bipolar", act_format="bipolar").acc_bits == 6
    assert MacArraySpec(pe=1, simd=1, weight_format="s4", act_format="u4", acc_bits=20).acc_bits == 20


@pytest.mark.parametrize("kwargs, message", [
    (dict(pe=0), "pe must be an integer in 1..1024, not 0"),
    (dict(pe=-3), "pe must be an integer in 1..1024, not -3"),
    (dict(simd=0), "simd must be an integer in 1..1024, not 0"),
    (dict(simd=2.5), "simd must be an integer in 1..1024, not 2.5"),
    (dict(weight_format="s17"), "weight_format: signed format bits must be in 2..16, not 17"),
    (dict(act_format="u0"), "act_format: unsigned format bits must be in 1..16, not 0"),
    (dict(act_format="pow2_3"), "act_format must be signed, unsigned, bipolar or ternary, not pow2"),
    (dict(acc_bits=12), r"acc_bits must be at least 13 for s4 weights × u4 activations over 32 terms "
                        r"\(worst case -3840..3360\), not 12"),
])
def test_mac_spec_errors_name_parameter_value_and_rule(kwargs, message):
    base = dict(pe=8, simd=8, weight_format="s4", act_format="u4", beats=4)
    with pytest.raises(ValueError, match=message):
        MacArraySpec(**{**base, **kwargs})


@pytest.mark.parametrize("kwargs, message", [
    (dict(lanes=0), "lanes must be an integer in 1..1024, not 0"),
    (dict(acc_bits=1), "acc_bits must be an integer in 2..64, not 1"),
    (dict(mult_bits=17), "mult_bits must be an integer in 0..16, not 17"),
    (dict(shift_bits=0), "shift_bits must be an integer in 1..6, not 0"),
    (dict(rounding="stochastic"), "rounding must be one of floor, half_up, half_even, not 'stochastic'"),
    (dict(out_format="s0"), "out_format: signed format bits must be in 2..16, not 0"),
])
def test_requant_spec_errors(kwargs, message):
    base = dict(lanes=4, acc_bits=12, out_format="u4")
    with pytest.raises(ValueError, match=message):
        RequantSpec(**{**base, **kwargs})


def test_specs_round_trip_through_json():
    m = MacArraySpec(pe=2, simd=3, weight_format="pow2_3", act_format="s3", beats=2)
    assert MacArraySpec.from_json(m.to_json()) == m
    r = RequantSpec(4, 12, "ternary", bias_bits=5, mult_bits=8, shift_bits=3, rounding="half_up", relu=True)
    assert RequantSpec.from_json(r.to_json()) == r


def test_product_kind_is_a_str_enum_that_reads_as_before():
    import json

    from lowbit.sw.specs import ProductKind, product_kind
    from lowbit.sw.formats import parse_format

    kinds = {(w, a): product_kind(parse_format(w), parse_format(a)) for w, a in
             [("bipolar", "bipolar"), ("bipolar", "u4"), ("ternary", "s4"), ("pow2_4", "u4"), ("s4", "u4")]}
    assert list(kinds.values()) == ["xnor", "negate", "ternary", "shift", "multiply"]
    assert all(isinstance(k, ProductKind) for k in kinds.values())
    k = kinds[("bipolar", "bipolar")]
    assert k is ProductKind.XNOR and f"{k} lanes" == "xnor lanes" and json.dumps([k]) == '["xnor"]'


def test_xnor_rule_equals_the_product_of_bipolar_values():
    import numpy as np

    from lowbit.sw.formats import IntFormat
    from lowbit.sw.specs import xnor_dot

    bip = IntFormat.bipolar()
    rng = np.random.default_rng(1)
    for n in (1, 7, 64):
        cw, cx = rng.integers(0, 2, (2, 200, n))
        agree = np.sum(cw == cx, axis=1)  # popcount of the XNOR of the codes
        assert np.array_equal(xnor_dot(agree, n), np.sum(bip.decode(cw) * bip.decode(cx), axis=1))


def test_one_bias_width_rule():
    import numpy as np

    from lowbit.sw.ir import DenseLayer
    from lowbit.sw.pack import ParamLayout
    from lowbit.sw.specs import bias_bits_for

    for bias, bits in (([0, 0], 1), ([-1, 0], 1), ([1], 2), ([-129, 5], 9), ([127, -128], 8), ([128], 9)):
        layer = DenseLayer(np.ones((len(bias), 2), np.int64), "s2", "u2", bias=np.array(bias))
        assert bias_bits_for(bias) == bits == ParamLayout.for_layer(layer).bias_bits
    assert bias_bits_for([]) == 1
