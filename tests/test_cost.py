"""The analytical cost model: structure, memories, cycles, and agreement with yosys."""

import json

import pytest

from lowbit.hw.calibrate import measured_block
from lowbit.sw.cost import (COEFFICIENTS_PATH, FEATURES, block_specs, estimate_block, estimate_layer, features,
                            block_ram_floor, load_coefficients, rom_memory, weight_memory)


def test_features_count_the_circuit():
    mac, rq = block_specs("s4", "u4", "u4", 8, 8, "half_even", 0)
    f = features(mac, rq)
    assert set(f) == set(FEATURES)
    assert f["lane_multiply"] == 64 * 4 * 4 and f["lane_xnor"] == 0
    assert f["acc"] == 8 * mac.acc_bits and f["rq_mult"] == 0
    # 8 leaves of 8-bit products (-120..105): 4 adders of 9 bits, 2 of 10, 1 of 11, per PE
    assert f["tree"] == 8 * (4 * 9 + 2 * 10 + 11)
    fx = features(*block_specs("bipolar", "bipolar", "bipolar", 4, 16))
    assert fx["lane_xnor"] == 64 and fx["lane_multiply"] == 0


def test_weight_memory_shapes():
    # 4 kbit EBR is 256×16 at most 16 wide: a 256-deep 64-bit word takes 4
    assert weight_memory(256, 64, "ice40")["bram"] == 4
    assert weight_memory(512, 36, "xilinx") == {"bram": 1, "lutram_luts": 0, "bits": 512 * 36}
    # shallow memories go to LUTRAM where the family has it
    assert weight_memory(32, 128, "xilinx") == {"bram": 0, "lutram_luts": 128, "bits": 32 * 128}
    assert weight_memory(16, 10, "ecp5")["lutram_luts"] == 12
    assert weight_memory(16, 10, "ice40")["bram"] == 1
    with pytest.raises(ValueError, match="family must be one of"):
        weight_memory(16, 10, "gowin")


def test_rom_memory_follows_what_yosys_builds():
    # SFC W1A1 at 2,048 lanes, fc0's weight ROM (896 bits x 224): ECP5 block RAM at the port floor (25
    # DP16KD, as yosys), Xilinx LUT6 ROM (yosys: no RAMB18, 7,295 LUT6 for the network) of 4 LUTs a bit
    assert rom_memory(224, 896, "ecp5") == {"bram": 25, "lutram_luts": 0, "bits": 224 * 896}
    assert rom_memory(224, 896, "xilinx") == {"bram": 0, "lutram_luts": 896 * 4, "bits": 224 * 896}
    assert rom_memory(448, 448, "xilinx")["bram"] == 13  # deeper: block RAM, as yosys (13 RAMB18)
    # parameter memories are read combinationally: never block RAM, 16 (LUT4) or 64 (LUT6) words a LUT
    assert rom_memory(128, 20, "ecp5", sync=False) == {"bram": 0, "lutram_luts": 20 * 8, "bits": 128 * 20}
    assert rom_memory(128, 20, "xilinx", sync=False)["lutram_luts"] == 40
    assert rom_memory(256, 16, "ice40")["bram"] == 1 and rom_memory(256, 16, "ice40", sync=False)["bram"] == 0


def test_block_ram_floor_is_capacity_or_port_width():
    # SFC W1A1 at 2,048 lanes (fold 8x112, 2x256, 2x256, 1x16): port width decides every layer, 56 in all
    widths_depths = [(896, 224), (512, 128), (512, 128), (16, 160)]
    assert [block_ram_floor(d, w, "ecp5") for w, d in widths_depths] == [25, 15, 15, 1]
    # capacity decides a deep narrow memory: 112 bits x 1,792 = 200,704 bits > 10 blocks of 18,432
    assert block_ram_floor(1792, 112, "xilinx") == 11
    assert block_ram_floor(256, 64, "ice40") == 4  # 16-bit ports; 16,384 bits = 4 blocks of 4,096 too
    assert block_ram_floor(16, 4096, "ecp5") == 0 and block_ram_floor(64, 10, "xilinx") == 0  # LUTRAM
    with pytest.raises(ValueError, match="family must be one of ice40, ecp5, xilinx, not 'gowin'"):
        block_ram_floor(512, 36, "gowin")


def test_layer_cycles_follow_the_folding():
    c = estimate_layer(64, 256, 8, 16, "s4", "u4", family="xilinx")
    assert c["cycles"] == (64 // 8) * (256 // 16)
    assert c["weight_bits"] == 64 * 256 * 4
    assert c["lut"] >= c["compute_lut"] > 0
    with pytest.raises(ValueError, match=r"pe must divide rows \(64\), not 7"):
        estimate_layer(64, 256, 7, 16, "s4", "u4")


def test_shipped_coefficients_and_their_reported_error():
    data = load_coefficients()
    for family in ("xilinx", "ice40"):
        fam = data["families"][family]
        assert set(fam["lut"]) == set(FEATURES) and all(v >= 0 for v in fam["lut"].values())
        assert fam["error"]["median_rel"] <= 0.15, fam["error"]
    # the shipped points reproduce from the shipped coefficients
    p = data["families"]["xilinx"]["points"][0]
    mac, rq = block_specs(*p["config"])
    assert estimate_block(mac, rq, "xilinx")["lut"] == max(1, p["model_lut"])
    with pytest.raises(ValueError, match="family must be one of"):
        estimate_block(mac, rq, "gowin")


@pytest.mark.hdl
@pytest.mark.parametrize("family", ["xilinx", "ice40"])
def test_model_against_yosys_off_the_grid(tmp_path, family):
    """A configuration outside the calibration grid (PE 4, SIMD 4, s3 × u3) within 35%."""
    mac, rq = block_specs("s3", "u3", "u3", 4, 4, "half_even", 0)
    measured = measured_block(mac, rq, family, cache=tmp_path)["resources"]
    est = estimate_block(mac, rq, family)
    assert abs(est["lut"] - measured["lut"]) / measured["lut"] < 0.35, (est["lut"], measured["lut"])
    # registers are counted, not fitted: within a few of yosys (it prunes constant bits)
    assert abs(est["ff"] - measured["ff"]) <= 0.25 * measured["ff"] + 2
