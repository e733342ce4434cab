"""Memory image files: exact text, round trips, validation, image sets and their manifest."""

import hashlib
import json

import numpy as np
import pytest

from lowbit.sw import memimage
from lowbit.sw.ir import DenseLayer
from lowbit.sw.memimage import (ImageSet, LayerBanks, MemImageError, dumps, load_bank, loads, read_memory,
                                verify_images, write_images, write_memory)
from lowbit.sw.pack import ParamLayout, params_from_banks, weights_from_image
from lowbit.sw.requant import RequantParams
from lowbit.sw.specs import RequantSpec

RNG_SEED = 7


# ---- exact text of a tiny memory: 3 words of 5 bits --------------------------------------------
WORDS = [0x01, 0x1F, 0x00]

EXPECTED_HEX = "01\n1f\n00\n"
EXPECTED_COE = ("memory_initialization_radix=16;\n"
                "memory_initialization_vector=\n"
                "01,\n"
                "1f,\n"
                "00;\n")
EXPECTED_MIF = ("WIDTH=5;\n"
                "DEPTH=3;\n"
                "\n"
                "ADDRESS_RADIX=HEX;\n"
                "DATA_RADIX=HEX;\n"
                "\n"
                "CONTENT BEGIN\n"
                "    0 : 01;\n"
                "    1 : 1f;\n"
                "    2 : 00;\n"
                "END;\n")


def test_exact_text_of_each_format():
    assert dumps(WORDS, 5, "hex") == EXPECTED_HEX.encode()
    assert dumps(WORDS, 5, "mem") == EXPECTED_HEX.encode()
    assert dumps(WORDS, 5, "coe") == EXPECTED_COE.encode()
    assert dumps(WORDS, 5, "mif") == EXPECTED_MIF.encode()
    assert dumps(WORDS, 5, "bin") == b"\x01\x1f\x00"
    # 9-bit words take two little-endian bytes; 65-bit words 17 hex digits and 9 bytes
    assert dumps([0x1FF, 0x001], 9, "bin") == b"\xff\x01\x01\x00"
    assert dumps([0x1FF, 0x001], 9, "hex") == b"1ff\n001\n"
    assert dumps([1 << 64], 65, "hex") == b"10000000000000000\n"
    assert dumps([1 << 64], 65, "bin") == b"\x00" * 8 + b"\x01"


def test_mif_addresses_are_padded_to_the_depth():
    text = dumps(list(range(17)), 8, "mif").decode()
    assert "    00 : 00;\n" in text and "    10 : 10;\nEND;\n" in text


@pytest.mark.parametrize("fmt", ["hex", "mem", "coe", "mif", "bin"])
@pytest.mark.parametrize("width", [1, 3, 5, 15, 21, 64, 65, 130])
@pytest.mark.parametrize("depth", [1, 9])
def test_round_trip_every_format(tmp_path, fmt, width, depth):
    rng = np.random.default_rng(RNG_SEED + width)
    words = [int.from_bytes(rng.bytes(17), "little") >> (136 - width) for _ in range(depth)]
    words[0] = (1 << width) - 1  # top bit set
    path = write_memory(tmp_path / f"m.{'hex' if fmt == 'hex' else fmt}", words, width, fmt)
    assert read_memory(path, width, depth, fmt) == words
    assert read_memory(path, None if fmt == "mif" else width) == words  # format from suffix


def test_writer_refuses_wide_words_and_empty_memories():
    with pytest.raises(ValueError, match=r"words\[1\] must fit in 5 unsigned bits, not 0x20"):
        dumps([1, 32], 5, "hex")
    with pytest.raises(ValueError, match=r"words must hold at least one word, not 0"):
        dumps([], 5, "hex")
    with pytest.raises(ValueError, match=r"format must be one of hex, mem, coe, mif, bin, not 'txt'"):
        dumps([1], 5, "txt")
    with pytest.raises(ValueError, match=r"width must be a positive integer, not 0"):
        dumps([0], 0, "hex")


# ---- reader validation -------------------------------------------------------------------------
def read_error(tmp_path, name, text, width=5, depth=None):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(MemImageError) as info:
        read_memory(path, width, depth)
    return str(info.value).replace(str(tmp_path), "<tmp>")


def test_hex_reader_errors(tmp_path):
    assert read_error(tmp_path, "a.hex", "01\n1g\n") == "<tmp>/a.hex:2: '1g' is not a hexadecimal number"
    assert read_error(tmp_path, "a.hex", "01\n3f\n") == \
        "<tmp>/a.hex:2: value 0x3f is wider than the 5-bit word width"
    assert read_error(tmp_path, "a.hex", "01\n001\n") == \
        "<tmp>/a.hex:2: '001' has 3 hex digits, a 5-bit word takes exactly 2"
    assert read_error(tmp_path, "a.hex", "01\n02\n", depth=3) == "<tmp>/a.hex: holds 2 words, expected depth 3"
    assert read_error(tmp_path, "a.hex", "@0\n01\n").startswith("<tmp>/a.hex:1: address lines ('@0') are not")
    assert read_error(tmp_path, "a.hex", "01 02\n") == "<tmp>/a.hex:1: must hold one word per line, not '01 02'"
    assert read_error(tmp_path, "a.hex", "\n// nothing\n") == "<tmp>/a.hex: holds no words"
    assert read_error(tmp_path, "a.hex", b"0\xff\n") == "<tmp>/a.hex: not an ASCII text file (byte 1)"
    # comments and blank lines are fine
    (tmp_path / "ok.hex").write_text("// header\n01\n\n1f // top\n")
    assert read_memory(tmp_path / "ok.hex", 5) == [1, 31]
    with pytest.raises(ValueError, match=r"width must be given to read a hex image .*, not None"):
        read_memory(tmp_path / "ok.hex")


def test_coe_reader_errors(tmp_path):
    good = EXPECTED_COE
    assert read_error(tmp_path, "a.coe", good.replace("radix=16", "radix=10")) == \
        "<tmp>/a.coe:1: memory_initialization_radix must be 16, not '10'"
    assert read_error(tmp_path, "a.coe", good.replace("1f,", "1x,")) == \
        "<tmp>/a.coe:4: '1x' is not a hexadecimal number"
    assert read_error(tmp_path, "a.coe", good.replace("1f,", "20,")) == \
        "<tmp>/a.coe:4: value 0x20 is wider than the 5-bit word width"
    assert read_error(tmp_path, "a.coe", good.replace("00;", "00,")) == \
        "<tmp>/a.coe:5: memory_initialization_vector is not closed by ';'"
    assert read_error(tmp_path, "a.coe", good + "01;\n") == \
        "<tmp>/a.coe:6: unexpected text after the closing ';': '01;'"
    assert read_error(tmp_path, "a.coe", good, depth=4) == "<tmp>/a.coe: holds 3 words, expected depth 4"
    # comments, values on the vector line and whitespace separators are fine
    (tmp_path / "ok.coe").write_text("; made by hand\nmemory_initialization_radix = 16;\n"
                                     "memory_initialization_vector = 01, 1f\n00;\n")
    assert read_memory(tmp_path / "ok.coe", 5) == WORDS


def test_mif_reader_errors(tmp_path):
    good = EXPECTED_MIF
    assert read_error(tmp_path, "a.mif", good, width=6) == "<tmp>/a.mif:1: WIDTH is 5, expected 6"
    assert read_error(tmp_path, "a.mif", good, depth=4) == "<tmp>/a.mif:2: DEPTH is 3, expected 4"
    assert read_error(tmp_path, "a.mif", good.replace("DATA_RADIX=HEX", "DATA_RADIX=DEC")) == \
        "<tmp>/a.mif:5: DATA_RADIX must be HEX, not 'DEC'"
    assert read_error(tmp_path, "a.mif", good.replace("1 : 1f", "1 : 2f")) == \
        "<tmp>/a.mif:9: value 0x2f is wider than the 5-bit word width"
    assert read_error(tmp_path, "a.mif", good.replace("1 : 1f", "1 : 1q")) == \
        "<tmp>/a.mif:9: '1q' is not a hexadecimal number"
    assert read_error(tmp_path, "a.mif", good.replace("    2 : 00;\n", "")) == \
        "<tmp>/a.mif: 1 of 3 addresses have no data (first: 2)"
    assert read_error(tmp_path, "a.mif", good.replace("2 : 00", "1 : 00")) == \
        "<tmp>/a.mif:10: address 1 is written twice"
    assert read_error(tmp_path, "a.mif", good.replace("2 : 00", "3 : 00")) == \
        "<tmp>/a.mif:10: address 3 must be within 0..2 (DEPTH=3)"
    assert read_error(tmp_path, "a.mif", good.replace("END;\n", "")) == "<tmp>/a.mif:10: no 'END;' line"
    assert read_error(tmp_path, "a.mif", good.replace("WIDTH=5;\n", "")) == "<tmp>/a.mif: header lacks WIDTH"
    # ranges and comments (as Quartus writes them) are fine
    (tmp_path / "ok.mif").write_text("-- by hand\nWIDTH=5;\nDEPTH=4;\nADDRESS_RADIX=HEX;\nDATA_RADIX=HEX;\n"
                                     "CONTENT BEGIN\n  [0..2] : 1f;  -- run\n  3 : 01;\nEND;\n")
    assert read_memory(tmp_path / "ok.mif") == [31, 31, 31, 1]


def test_bin_reader_errors(tmp_path):
    assert read_error(tmp_path, "a.bin", b"\x01\x02\x03", width=9) == \
        "<tmp>/a.bin: 3 bytes is not a whole number of 2-byte words (width 9)"
    assert read_error(tmp_path, "a.bin", b"\x01\x00\x00\x02", width=9) == \
        "<tmp>/a.bin: word 1 (byte offset 2) = 0x200 is wider than the 9-bit word width"
    assert read_error(tmp_path, "a.bin", b"\x01\x00", width=9, depth=2) == \
        "<tmp>/a.bin: holds 1 words, expected depth 2"
    assert read_error(tmp_path, "a.bin", b"", width=9) == "<tmp>/a.bin: holds no words"


def test_read_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(MemImageError, match=r"memory image '.*nope.hex' does not exist"):
        read_memory(tmp_path / "nope.hex", 4)
    with pytest.raises(ValueError, match=r"format must be given or implied by the suffix .*, not '.txt'"):
        read_memory(tmp_path / "x.txt", 4)


def test_loads_from_str():
    assert loads(EXPECTED_MIF, "mif") == WORDS


# ---- image sets ----------------------------------------------------------------------------------
def tiny_network_layers():
    rng = np.random.default_rng(RNG_SEED)
    l0 = DenseLayer(rng.choice([-1, 1], size=(4, 6)), "bipolar", "u3", bias=rng.integers(-5, 5, 4),
                    requant=RequantParams("ternary", shift=np.array([1, 2, 3, 0]),
                                          multiplier=np.array([1, 5, 2, 3])), name="fc1")
    l1 = DenseLayer(rng.choice([-1, 0, 1], size=(2, 4)), "ternary", "ternary", bias=np.array([3, -9]),
                    name="logits")
    return l0, l1


def build_set():
    l0, l1 = tiny_network_layers()
    images = ImageSet()
    images.add_layer(0, l0, pe=2, simd=3,
                     spec=RequantSpec(lanes=2, acc_bits=8, out_format="ternary", bias_bits=4, mult_bits=3,
                                      shift_bits=2))
    images.add_layer(1, l1, pe=1, simd=4)
    return images


def test_image_set_write_and_manifest(tmp_path):
    out = tmp_path / "images"
    manifest = build_set().write(out, extra={"folding": {"fc1": [2, 3]}, "cycles": 12})
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["format"] == "lowbit-memimage" and manifest["version"] == 1
    assert manifest["formats"] == ["hex", "coe", "mif", "bin"]
    assert manifest["lane_order"] == "lane k at bits [k*b,(k+1)*b), LSB first"
    assert manifest["folding"] == {"fc1": [2, 3]} and manifest["cycles"] == 12
    mems = manifest["memories"]
    assert [(m["layer"], m["kind"], m["bank"]) for m in mems] == [
        (0, "weights", 0), (0, "params", 0), (0, "params", 1), (1, "weights", 0), (1, "params", 0)]
    w0 = mems[0]  # one weight memory: the 2 PE rows' 3 lanes side by side
    assert (w0["layer_name"], w0["width"], w0["depth"], w0["lanes"], w0["lane_bits"]) == ("fc1", 6, 4, 6, 1)
    assert w0["encoding"] == "bipolar: bit 1 = +1, bit 0 = -1" and w0["value_format"] == "bipolar"
    assert w0["fold"] == {"rows": 4, "cols": 6, "pe": 2, "simd": 3, "nf": 2, "sf": 2}
    p0 = mems[1]
    assert p0["width"] == 9 and p0["depth"] == 2 and p0["lanes"] is None
    assert [(f["name"], f["lsb"], f["bits"]) for f in p0["fields"]] == [("bias", 0, 4), ("multiplier", 4, 3),
                                                                        ("shift", 7, 2)]
    assert mems[3]["encoding"].startswith("ternary: two's complement 2-bit, 01=+1, 11=-1, 00=0")
    assert [f["name"] for f in mems[4]["fields"]] == ["bias"] and mems[4]["width"] == 5
    # every listed file exists with the listed hash; nothing else is in the directory
    listed = {"manifest.json"}
    for m in mems:
        assert set(m["files"]) == {"hex", "coe", "mif", "bin"}
        for rec in m["files"].values():
            assert hashlib.sha256((out / rec["file"]).read_bytes()).hexdigest() == rec["sha256"]
            listed.add(rec["file"])
    assert {p.name for p in out.iterdir()} == listed
    assert mems[0]["files"]["hex"]["file"] == "layer0_weights_bank0.hex"
    assert [p.name for p in tmp_path.iterdir()] == ["images"]  # no temp dirs left behind
    assert verify_images(out) == manifest


def test_load_bank_reads_back_every_format(tmp_path):
    l0, l1 = tiny_network_layers()
    out = tmp_path / "img"
    build_set().write(out, formats=("hex", "mem", "coe", "mif", "bin"))
    for fmt in ("hex", "mem", "coe", "mif", "bin"):
        words = load_bank(out, 0, "weights", 0, fmt)
        np.testing.assert_array_equal(weights_from_image(words, 4, 6, 2, 3, "bipolar"), l0.weights)
        pb = [load_bank(out, "fc1", "params", p, fmt) for p in range(2)]
        cp = params_from_banks(pb, 4, 2, ParamLayout(4, 3, 2))
        np.testing.assert_array_equal(cp.bias, l0.bias)
        np.testing.assert_array_equal(cp.multiplier, [1, 5, 2, 3])
        np.testing.assert_array_equal(cp.shift, [1, 2, 3, 0])
        logits = load_bank(out, 1, "weights", 0, fmt)
        np.testing.assert_array_equal(weights_from_image(logits, 2, 4, 1, 4, "ternary"), l1.weights)
    with pytest.raises(ValueError, match=r"holds no weights memory for layer 0, bank 5"):
        load_bank(out, 0, "weights", 5)
    with pytest.raises(ValueError, match=r"kind must be one of weights, params, not 'bias'"):
        load_bank(out, 0, "bias", 0)


def test_tampered_and_missing_files_are_detected(tmp_path):
    out = tmp_path / "img"
    manifest = build_set().write(out)
    rec = manifest["memories"][2]["files"]["coe"]
    path = out / rec["file"]
    original = path.read_bytes()
    path.write_bytes(original.replace(b"memory_initialization_vector=\n", b"memory_initialization_vector=\n0,\n", 1))
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ValueError) as info:
        verify_images(out)
    msg = str(info.value)
    assert "layer0_params_bank1.coe" in msg and rec["sha256"] in msg and actual in msg
    with pytest.raises(ValueError, match=r"layer0_params_bank1.coe' has been modified"):
        load_bank(out, 0, "params", 1, "coe")
    path.write_bytes(original)
    verify_images(out)
    (out / "layer1_params_bank0.bin").unlink()
    with pytest.raises(ValueError, match=r"layer1_params_bank0.bin' is missing \(expected sha256 [0-9a-f]{64}\)"):
        verify_images(out)


def test_rewrite_replaces_previous_set_but_not_foreign_dirs(tmp_path):
    out = tmp_path / "img"
    build_set().write(out, formats=("hex", "bin"))
    (out / "stale.hex").write_text("00\n")
    manifest = build_set().write(out, formats=("mif",))
    assert {p.suffix for p in out.iterdir()} == {".mif", ".json"}
    verify_images(out)
    assert manifest["formats"] == ["mif"]
    foreign = tmp_path / "src"
    foreign.mkdir()
    (foreign / "keep.v").write_text("module m; endmodule\n")
    with pytest.raises(ValueError, match=r"out_dir must be empty or hold a previous image set .* refusing"):
        build_set().write(foreign)
    assert [p.name for p in foreign.iterdir()] == ["keep.v"]


def test_failed_write_leaves_nothing_and_keeps_the_old_set(tmp_path, monkeypatch):
    out = tmp_path / "img"
    with pytest.raises(ValueError, match=r"extra manifest keys must be JSON-serialisable"):
        build_set().write(out, extra={"bad": object()})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=r"extra manifest keys must not replace .*, not \['memories'\]"):
        build_set().write(out, extra={"memories": []})
    old = build_set().write(out, formats=("hex",))
    # a crash half-way through writing files: no partial output, the previous set intact
    real_write = memimage.Path.write_bytes
    calls = []

    def failing_write(self, data):
        calls.append(self)
        if len(calls) == 3:
            raise OSError("disk full")
        return real_write(self, data)

    monkeypatch.setattr(memimage.Path, "write_bytes", failing_write)
    with pytest.raises(OSError, match="disk full"):
        build_set().write(out, formats=("hex", "bin"))
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["img"]
    assert verify_images(out) == old


def test_duplicate_memories_and_empty_sets_are_refused(tmp_path):
    l0, _ = tiny_network_layers()
    images = ImageSet()
    images.add_layer(0, l0, 2, 3)
    with pytest.raises(ValueError, match=r"memory \(layer 0, weights, bank 0\) must be added once, not twice"):
        images.add_layer(0, l0, 2, 3)
    with pytest.raises(ValueError, match=r"must hold at least one memory to be written, not 0"):
        ImageSet().write(tmp_path / "x")
    with pytest.raises(ValueError, match=r"simd must be a divisor of the 6 columns"):
        images.add_layer(1, l0, 2, 4)


def test_write_images_from_layer_banks(tmp_path):
    l0, l1 = tiny_network_layers()
    manifest = write_images([LayerBanks.from_layer(0, l0, 4, 6), LayerBanks.from_layer(1, l1, 2, 2, params=False)],
                            tmp_path / "img", formats=("hex",), extra={"io": "stream"})
    kinds = [(m["layer"], m["kind"], m["bank"], m["width"], m["depth"]) for m in manifest["memories"]]
    # default layout for fc1: bias -5..4 → 4 bits, multiplier up to 5 → 3 bits, shift up to 3 → 2 bits
    assert kinds == [(0, "weights", 0, 24, 1)] + [(0, "params", b, 9, 1) for b in range(4)] + [(1, "weights", 0, 8, 2)]
    assert manifest["io"] == "stream"
    verify_images(tmp_path / "img")
