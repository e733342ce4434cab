"""The simulation model next to the synthesized Verilog: written, checked, refused when altered."""

import json

import pytest

from lowbit.hw import simmodel
from lowbit.hw.arith import digit_multiply
from lowbit.hw.build import build_network, load_build
from lowbit.sim.netrun import simulate_build
from lowbit.sw.fold import plan_folding
from lowbit.sw.formats import parse_format
from lowbit.sw.randnet import random_network


def test_build_writes_the_simulation_model_and_its_lane_check(tmp_path):
    net = random_network([12, 8, 4], "s4", "u4", seed=5)
    out = tmp_path / "net"
    build_network(net, plan_folding(net, [(4, 3), (2, 4)]), out)
    manifest = json.loads((out / "manifest.json").read_text())
    sim = manifest["simulation_model"]
    assert sim["file"] == "lowbit_net_sim.v" and (out / sim["file"]).is_file()
    # one format pair (s4 weights, u4 activations in both layers), all 16 x 16 code pairs
    assert sim["lane_multiplier_check"] == [{"weight": "s4", "act": "u4", "code_pairs": 256, "mismatches": 0}]
    text = (out / sim["file"]).read_text()
    assert "module lowbit_net(" in text.replace(" (", "(")
    assert text != (out / "lowbit_net.v").read_text()
    # tampering is caught like any other file of the build
    (out / sim["file"]).write_text(text + "\n")
    with pytest.raises(ValueError, match=r"lowbit_net_sim.v' has been modified"):
        load_build(out)


def test_a_wrong_digit_multiplier_stops_the_build(tmp_path, monkeypatch):
    def off_by_one(w_code, wf, multiples):
        return digit_multiply(w_code, wf, multiples) + (w_code == 3)

    monkeypatch.setattr(simmodel, "digit_multiply", off_by_one)
    simmodel._mismatches.cache_clear()
    net = random_network([6, 4], "s3", "u2", seed=1)
    try:
        with pytest.raises(AssertionError, match=r"digit multiplier s3 x u2: code pair \(3, 0\) gives 1, not 0 "
                                                 r"\(4 of 32 pairs differ\)"):
            build_network(net, plan_folding(net, [(2, 3)]), tmp_path / "net")
    finally:
        simmodel._mismatches.cache_clear()
    assert not (tmp_path / "net").exists()


def test_multiplier_pairs_are_the_general_multiply_layers_only():
    net = random_network([8, 6, 4], "s4", "u4", seed=2)
    assert simmodel.multiplier_pairs(net) == [(parse_format("s4"), parse_format("u4"))]
    assert simmodel.multiplier_pairs(random_network([8, 4], "ternary", "u4", seed=2)) == []


def test_simulation_model_of_an_old_build_is_refused(tmp_path):
    net = random_network([12, 8, 4], "s4", "u4", seed=5)
    out = tmp_path / "net"
    build_network(net, plan_folding(net, [(4, 3), (2, 4)]), out, simulation_model=False)
    manifest, back = load_build(out)
    assert manifest["simulation_model"] is None
    with pytest.raises(ValueError, match=r"model must be 'synthesis' for .*, not 'simulation': it was built without a simulation model"):
        simulate_build(out, manifest, back, [[0] * 12], model="simulation")
    with pytest.raises(ValueError, match=r"model must be one of synthesis, simulation, not 'fast'"):
        simulate_build(out, manifest, back, [[0] * 12], model="fast")


@pytest.mark.parametrize("wf, af", [("s3", "u2"), ("ternary", "s2"), ("bipolar", "bipolar")])
def test_mac_array_models_equal_for_every_input_sequence(wf, af):
    """Bounded model check: for 12 cycles from reset, whatever arrives (valid, weights,
    activations, last) and whatever the consumer does (ready), both netlists give the same
    i.ready, o.valid and valid o.payload; the product stage, the held registers and the
    accumulator's first/last logic are all inside that window (latency 4 at SIMD 2)."""
    from lowbit.hw.mac import MacArray
    from lowbit.sw.specs import MacArraySpec

    spec = MacArraySpec(pe=2, simd=2, weight_format=wf, act_format=af, beats=3)
    simmodel.bounded_equivalence(lambda model: MacArray(spec, model=model), 12)


def test_requantizer_models_equal_for_every_input_sequence():
    from lowbit.hw.requant import Requantizer
    from lowbit.sw.specs import RequantSpec

    spec = RequantSpec(2, 5, "s3", bias_bits=3, mult_bits=2, shift_bits=2, rounding="half_even", relu=False)
    simmodel.bounded_equivalence(lambda model: Requantizer(spec, model=model), 10)


def test_bounded_equivalence_finds_a_register_that_loads_too_late():
    """The check is not vacuous: a simulation model whose product registers wait for the
    second stage's valid bit instead of the first is caught."""
    import inspect
    import textwrap

    from lowbit.hw import mac
    from lowbit.sw.specs import MacArraySpec

    code = textwrap.dedent(inspect.getsource(mac.MacArray.elaborate))
    assert code.count("with when(valid[0]):") == 1  # the product registers' enable
    mutated = code.replace("with when(valid[0]):", "with when(valid[1]):")
    namespace = dict(vars(mac))
    exec(compile(mutated, mac.__file__, "exec"), namespace)
    late_products = type("LateProducts", (mac.MacArray,), {"elaborate": namespace["elaborate"]})

    spec = MacArraySpec(pe=1, simd=2, weight_format="s3", act_format="u2", beats=3)
    with pytest.raises(AssertionError, match=r"the two models differ within 12 cycles"):
        simmodel.bounded_equivalence(lambda model: late_products(spec, model=model), 12)


@pytest.mark.hdl
def test_a_rebuilt_network_is_simulated_as_rebuilt(tmp_path):
    """Same build folder, same simulation folder, new weights: the second run must simulate the
    new design (an executable kept from the first run once simulated the old one)."""
    import numpy as np

    pixels = np.random.default_rng(0).integers(0, 256, size=(6, 12), dtype=np.uint8)
    for seed in (5, 6):
        net = random_network([12, 8, 4], "s4", "u4", seed=seed)
        build_network(net, plan_folding(net, [(4, 3), (2, 4)]), tmp_path / "net")
        manifest, back = load_build(tmp_path / "net")
        rep = simulate_build(tmp_path / "net", manifest, back, pixels, stress=2, model="simulation",
                             sim_dir=tmp_path / "sim")
        assert rep.run.passed and rep.mismatches == 0, (seed, rep.first_mismatches)
