"""The command line of bringing your own model: ``lowbit quantize --model`` (torch .pt2, ONNX, pickled
module with --trust-pickle), ``lowbit import`` (QONNX) and ``lowbit export`` (IR → QONNX)."""

import numpy as np
import pytest
import torch
from torch import nn

from lowbit.sw.cli import main
from lowbit.sw.ir import Network


class SmallCnn(nn.Module):
    """A user's own CNN for 8x8 images, NCHW, flattening with torch.flatten (NCHW order)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 3 * 3, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.bn(self.conv(x))), 2)
        return self.fc(torch.flatten(x, 1))


def _model():
    torch.manual_seed(0)
    m = SmallCnn()
    with torch.no_grad():  # batch-norm statistics that are not the identity
        m.bn.running_mean.uniform_(-0.2, 0.2)
        m.bn.running_var.uniform_(0.5, 2.0)
    return m.eval()


def _check_figure(out: str) -> float:
    return float(out.split("max|diff| = ")[1].split(" of max|logit|")[0])


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_quantize_model_file_checks_then_writes(tmp_path, capsys, fmt):
    m = _model()
    path = tmp_path / f"user.{fmt}"
    if fmt == "onnx":
        torch.onnx.export(m, torch.zeros(1, 1, 8, 8), str(path), dynamo=False)
    else:
        torch.export.save(torch.export.export(m, (torch.zeros(1, 1, 8, 8),)), str(path))
    ir = tmp_path / "net.npz"
    assert main(["quantize", "--model", str(path), "--dataset", "digits", "-w", "8", "-a", "8", "--out", str(ir)]) == 0
    out = capsys.readouterr().out
    assert "import check against" in out and "on 359 digits test images" in out
    assert _check_figure(out) <= 1e-4
    net = Network.load(ir)
    src = net.metadata["source_model"]
    assert src["file"] == str(path) and src["images"] == 359 and src["max_rel_diff"] <= 1e-4
    # the integer network follows the user's model: W8A8 agrees with its float classes on most images
    from lowbit.sw.datasets import load_dataset
    from lowbit.sw.golden import run_network

    ds = load_dataset("digits")
    x = torch.as_tensor(ds.x_test.reshape(-1, 1, 8, 8) / 255.0, dtype=torch.float32)
    with torch.no_grad():
        float_classes = m(x).argmax(1).numpy()
    ours = run_network(net, ds.x_test, raw_pixels=True, keep="logits").classes
    assert np.mean(ours == float_classes) > 0.9


def test_quantize_model_refusals(tmp_path, capsys):
    m = _model()
    pickled = tmp_path / "whole.pt"
    torch.save(m, pickled)
    assert main(["quantize", "--model", str(pickled), "--dataset", "digits", "--out", str(tmp_path / "a.npz")]) == 2
    err = capsys.readouterr().err
    assert "runs code from the file" in err and "--trust-pickle" in err
    assert not (tmp_path / "a.npz").exists()
    assert main(["quantize", "--trust-pickle", "--dataset", "digits"]) == 2
    assert "describe a --model file; give --model" in capsys.readouterr().err
    assert main(["quantize", "--model", str(tmp_path / "m.h5"), "--dataset", "digits"]) == 2
    assert "--model must be a torch.export program (.pt2), an ONNX model (.onnx)" in capsys.readouterr().err
    assert main(["quantize", "--model", str(pickled), "--method", "wage"]) == 2
    assert "--model cannot be used with --method wage" in capsys.readouterr().err
    assert main(["quantize", "--model", str(pickled), "--check-images", "0"]) == 2
    assert "--check-images must be at least 1 (the import is always checked), not 0" in capsys.readouterr().err
    assert main(["quantize", "--model", str(pickled), "--normalize", "0.5", "--dataset", "digits"]) == 2
    assert "--normalize must be MEAN[,MEAN...]/STD[,STD...]" in capsys.readouterr().err


def test_quantize_trusted_pickle_with_normalize(tmp_path, capsys):
    """A pickled module trained on Normalize(mean, std) inputs: the preprocessing folds into its first layer
    (valid padding, so the mean folds exactly) and the check passes; a previous good IR stays until then."""
    m = _model()
    pickled = tmp_path / "whole.pt"
    torch.save(m, pickled)
    ir = tmp_path / "net.npz"
    assert main(["quantize", "--model", str(pickled), "--trust-pickle", "--normalize", "0.3/0.4", "--dataset", "digits",
                 "--out", str(ir)]) == 0
    out = capsys.readouterr().out
    assert "(pixel/255 - [0.3]) / [0.4] folded into the first layer" in out and _check_figure(out) <= 1e-4


def test_import_qonnx_then_build_inputs(tmp_path, capsys):
    """lowbit import: a Brevitas power-of-two W4A4 CNN trained here, imported exactly (every logit equal to
    qonnx's execution after undoing the output scale), written as an IR that lowbit eval reads."""
    from tests.test_frontend_qonnx import pow2_cnn, train_and_export

    torch.manual_seed(0)
    path = train_and_export(pow2_cnn(), tmp_path / "q.onnx", divisor=256.0, steps=200)
    ir = tmp_path / "q.npz"
    assert main(["import", str(path), "-o", str(ir), "--dataset", "digits", "--input-scale", str(1 / 256)]) == 0
    out = capsys.readouterr().out
    assert "against qonnx's execution on 359 digits test images: classes agree on 100.00%, logits equal after " \
           "undoing the output scale 100.00%" in out
    net = Network.load(ir)
    assert [l.op for l in net.layers] == ["conv2d", "maxpool2d", "conv2d", "dense"]
    assert net.metadata["source_model"]["format"] == "qonnx"
    acc = float(out.split("golden-model (integer) test accuracy ")[1].split("%")[0])
    assert main(["eval", str(ir), "--dataset", "digits"]) == 0
    assert f"golden-model accuracy {acc:.2f}%" in capsys.readouterr().out
    # a float ONNX file is not QONNX: the importer says so and writes nothing
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(_model(), torch.zeros(1, 1, 8, 8), str(plain), dynamo=False)
    assert main(["import", str(plain), "-o", str(tmp_path / "p.npz"), "--dataset", "digits"]) == 2
    assert not (tmp_path / "p.npz").exists()
    capsys.readouterr()
    assert main(["import", str(path), "-o", str(tmp_path / "x.onnx"), "--dataset", "digits"]) == 2
    assert "--output must name a .npz file" in capsys.readouterr().err


def test_export_checks_against_golden_and_keeps_previous_output(tmp_path, capsys):
    from lowbit.sw.datasets import load_dataset
    from lowbit.sw.export_qonnx import qonnx_outputs
    from lowbit.sw.golden import run_network
    from lowbit.sw.quant import quantize
    from lowbit.sw.train import build_preset

    torch.manual_seed(0)
    ds = load_dataset("digits")
    net = quantize(build_preset("cnn_digits", (8, 8, 1)), "scaled", 4, 4, ds.x_train[:500], progress=False)
    ir = tmp_path / "net.npz"
    net.save(ir)
    assert main(["export", str(ir), "--dataset", "digits"]) == 0  # default output: NET's path with .onnx
    out = capsys.readouterr().out
    assert "qonnx's executor == golden model on every output of 359 digits test images (3590 logits)" in out
    onnx_path = ir.with_suffix(".onnx")
    ours = run_network(net, ds.x_test, raw_pixels=True, keep="logits").logits
    np.testing.assert_array_equal(qonnx_outputs(onnx_path, ds.x_test), ours)
    before = onnx_path.read_bytes()
    # a failing export (wrong data for the network) leaves the previous file as it was
    assert main(["export", str(ir), "--data", str(_npz(tmp_path)), "-o", str(onnx_path)]) == 2
    assert "has 16 features but" in capsys.readouterr().err
    assert onnx_path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staged file left behind
    assert main(["export", str(ir), "-o", str(tmp_path / "n.txt")]) == 2
    assert "--output must name a .onnx file" in capsys.readouterr().err


def _npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "other.npz"
    np.savez(path, x_train=rng.integers(0, 256, (20, 4, 4), dtype=np.uint8), y_train=np.arange(20) % 2,
             x_test=rng.integers(0, 256, (10, 4, 4), dtype=np.uint8), y_test=np.arange(10) % 2)
    return path
