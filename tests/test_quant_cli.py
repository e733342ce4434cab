"""lowbit train / quantize / eval / report on digits, and their error messages."""

import pytest

from lowbit.sw.cli import main


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    p = tmp_path_factory.mktemp("m") / "tfc.pt"
    assert main(["train", "--preset", "tfc", "--dataset", "digits", "--epochs", "3", "--out", str(p)]) == 0
    return p


def test_quantize_input_bits(ckpt, tmp_path, capsys):
    from lowbit.sw.ir import Network

    ir = tmp_path / "b.npz"
    assert main(["quantize", "--checkpoint", str(ckpt), "--dataset", "digits", "--method", "binary", "-a", "1",
                 "--input-bits", "8", "--calib", "300", "--out", str(ir)]) == 0
    net = Network.load(ir)
    assert net.name == "binary_w1a1_in8" and net.metadata["input_bits"] == 8
    assert net.input.kind == "shift" and net.input.amount == 0 and str(net.layers[0].in_format) == "u8"
    assert "golden-model (integer) test accuracy" in capsys.readouterr().out


def test_quantize_then_eval(ckpt, tmp_path, capsys):
    ir = tmp_path / "n.npz"
    assert main(["quantize", "--checkpoint", str(ckpt), "--dataset", "digits", "--method", "pow2", "-w", "4",
                 "-a", "4", "--calib", "300", "--out", str(ir)]) == 0
    out = capsys.readouterr().out
    assert "golden-model (integer) test accuracy" in out and ir.is_file()
    assert main(["eval", str(ir), "--dataset", "digits"]) == 0
    out = capsys.readouterr().out
    assert "golden-model accuracy" in out and "saturation" in out and "clipped high" in out and "raw logits" in out


@pytest.mark.parametrize("argv,message", [
    (["quantize", "--method", "nope"], "--method must be one of pow2, scaled, dfp, ternary, binary, wage, minifloat, "
                                       "not 'nope'"),
    (["quantize", "--method", "pow2", "-w", "1"], "weight_bits for method 'pow2' must be an integer in 2..16, not 1"),
    (["quantize", "--method", "ternary", "--cluster", "0"], "cluster for method 'ternary' must be a positive integer"),
    (["quantize", "--method", "wage", "--wage-bits", "2-8"], "WAGE bits must be 'W-A-G-E'"),
    (["train", "--preset", "huge"], "--preset must be one of tfc, sfc, lfc, lenet, cnn_digits, not 'huge'"),
    (["train", "--lr", "0"], "--lr must be a positive number, not 0.0"),
    (["report", "accuracy", "--presets", "xfc"], "--presets entries must be among tfc, sfc, lfc, lenet, cnn_digits, "
                                                "not 'xfc'"),
])
def test_bad_input(ckpt, argv, message, capsys):
    extra = ["--checkpoint", str(ckpt)] if argv[0] == "quantize" and argv[2] != "wage" else []
    assert main(argv + ["--dataset", "digits"] + extra) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["-w", "0"], "weight_bits for method 'pow2' must be an integer in 2..16, not 0"),
    (["--method", "dfp", "-a", "17"], "act_bits for method 'dfp' must be an integer in 1..16, not 17"),
    (["--method", "scaled", "--granularity", "row"], "granularity for method 'scaled' must be one of channel, layer"),
    (["--method", "ternary", "--cluster", "x"], "cluster for method 'ternary' must be a positive integer"),
    (["--method", "binary", "--multiplier-bits", "1"], "multiplier_bits for method 'binary' must be an integer in "
                                                        "2..16, not 1"),
    (["--method", "wage", "--wage-bits", "9-8-8-8"], "WAGE bits must be 'W-A-G-E'"),
    (["--method", "wage", "--wage-epochs", "-1"], "--wage-epochs must be a non-negative integer, not -1"),
    (["--preset", "xfc"], "--preset must be one of tfc, sfc, lfc, lenet, cnn_digits, not 'xfc'"),
    (["--qat", "--qat-epochs", "-2"], "--qat-epochs must be a non-negative integer, not -2"),
    (["--input-bits", "9"], "input_bits for method 'pow2' must be an integer in 1..8, not 9"),
    (["--method", "scaled", "--input-bits", "0"], "input_bits for method 'scaled' must be an integer in 1..8, not 0"),
    (["--method", "wage", "--input-bits", "8"], "--input-bits must be left out with --method wage (its first layer "
                                                "takes 8-bit pixels"),
    (["--method", "minifloat", "--input-bits", "4"], "--input-bits must be left out with --method minifloat"),
])
def test_quantize_checks_options_before_loading_data_or_training(argv, message, tmp_path, monkeypatch, capsys):
    """`lowbit quantize -w 0` used to train the float model for 10 epochs before refusing."""
    import lowbit.sw.datasets as datasets

    def no_data(*args, **kw):
        raise AssertionError("the dataset was loaded before the options were checked")

    monkeypatch.setattr(datasets, "load_dataset", no_data)
    monkeypatch.setattr(datasets, "default_dataset", no_data)
    monkeypatch.chdir(tmp_path)  # the checkpoint cache is build/models under the working folder
    assert main(["quantize", "--dataset", "digits"] + argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "build").exists()


def test_checkpoint_of_another_architecture(ckpt, capsys, tmp_path):
    # a digits (64-input) checkpoint cannot quantize a 784-input dataset
    from tests.test_datasets import write_set

    write_set(tmp_path / "fm", n_train=4, n_test=2)
    assert main(["quantize", "--checkpoint", str(ckpt), "--dataset", "mnist", "--data-dir", str(tmp_path / "fm")]) == 2
    assert "takes 64 inputs, the dataset has 16 features" in capsys.readouterr().err


def test_corrupt_dataset_message(tmp_path, capsys):
    from tests.test_datasets import write_set

    write_set(tmp_path, gz=False)
    p = tmp_path / "t10k-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-3])
    assert main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path)]) == 2
    assert "is truncated" in capsys.readouterr().err


def test_report_small(tmp_path, capsys):
    assert main(["report", "accuracy", "--dataset", "digits", "--presets", "tfc", "--bits", "2,4",
                 "--methods", "pow2,ternary", "--qat-epochs", "0", "--wage-epochs", "0", "--no-minifloat",
                 "--epochs", "2", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "accuracy.md").read_text()
    # 8-bit pixels into the first layer by default (--input-bits 8), named in the config
    assert "| tfc | pow2 | W4 A4 in8 | 4 | ptq |" in md and "ternary A8 N=16 in8" in md
    assert (tmp_path / "accuracy.csv").read_text().startswith("preset,method,config,bits,mode,accuracy,delta,notes")


def test_report_minifloat_search_row_compares_format_and_width(tmp_path):
    import re

    assert main(["report", "accuracy", "--dataset", "digits", "--presets", "tfc", "--bits", "4",
                 "--methods", "pow2", "--qat-epochs", "0", "--wage-epochs", "0", "--epochs", "2",
                 "--out", str(tmp_path)]) == 0
    row = next(line for line in (tmp_path / "accuracy.md").read_text().splitlines() if "| search: " in line)
    m = re.search(r"\| search: e(\d)m(\d) \| (\d+) \|.*\(chose e(\d)m(\d), (\d+) bits\); same format: (yes|no), "
                  r"same width: (yes|no) \|", row)
    assert m, row
    fe, fm, fbits, xe, xm, xbits, same_format, same_width = m.groups()
    assert int(fbits) == 1 + int(fe) + int(fm) and int(xbits) == 1 + int(xe) + int(xm)
    assert same_format == ("yes" if (fe, fm) == (xe, xm) else "no")
    assert same_width == ("yes" if fbits == xbits else "no")


@pytest.mark.parametrize("argv,message", [
    (["--method", "pow2", "--learn-scales"], "it needs --qat and a --method among pow2, scaled, dfp, ternary, binary, "
                                             "not --method pow2 without --qat"),
    (["--method", "wage", "--qat", "--learn-scales"], "not --method wage"),
])
def test_learn_scales_needs_qat_and_a_plan(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["quantize", "--dataset", "digits", *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "build").exists()  # refused before any training
