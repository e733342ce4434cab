"""The float ONNX frontend (sw/frontends/onnx.py): torch exports and hand-built graphs converted to a
FloatGraph that agrees with onnxruntime on digits test images, the check that proves it (and fails
when it should), quantization of the result, and every refusal with its message."""

import math
import time
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from lowbit.sw.datasets import load_dataset
from lowbit.sw.frontends import onnx as onnx_frontend
from lowbit.sw.frontends.common import ModelImportError, Preprocessing, finish_import
from lowbit.sw.frontends.graph import BatchNorm, Conv2d, Flatten, Linear
from lowbit.sw.frontends.onnx import convert_onnx, from_onnx
from lowbit.sw.golden import run_network
from lowbit.sw.quant import quantize
from lowbit.sw.train import to_input

TOL = 1e-4


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _export(model, example, path, **kw):
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated (not gone) on torch 2.13
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), example, str(path), dynamo=False, **kw)
    return path


class LeNetish(nn.Module):
    """conv-bn-relu-maxpool twice, torch.flatten (NCHW), linear-relu, linear: 8x8x1 digits."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.conv2, self.bn2 = nn.Conv2d(6, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.fc1, self.fc2 = nn.Linear(8 * 2 * 2, 24), nn.Linear(24, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = torch.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


def _train(model, x, y, epochs=60):
    """A few full-batch Adam steps: logits of a model that has learnt something (seeded)."""
    opt = torch.optim.Adam(model.parameters(), 0.02)
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def cnn(digits, tmp_path_factory):
    """A trained LeNet-like CNN, its BN statistics then made nontrivial, exported with its batch
    fixed at 1 and its batch norms kept (TrainingMode.PRESERVE)."""
    torch.manual_seed(0)
    model = LeNetish()
    x = torch.as_tensor(digits.x_train, dtype=torch.float32).reshape(-1, 1, 8, 8) / 255
    _train(model, x, torch.as_tensor(digits.y_train))
    with torch.no_grad():
        for bn in (model.bn1, model.bn2):
            bn.running_mean.add_(torch.rand(bn.num_features) * 0.2 - 0.1)
            bn.running_var.mul_(torch.rand(bn.num_features) + 0.5)
    path = _export(model, torch.zeros(1, 1, 8, 8), tmp_path_factory.mktemp("cnn") / "lenet.onnx",
                   training=torch.onnx.TrainingMode.PRESERVE)
    return model, path


@pytest.fixture(scope="module")
def mlp(digits, tmp_path_factory):
    """A trained MLP with dropout, exported with a symbolic batch dimension."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 16), nn.ReLU(),
                          nn.Linear(16, 10))
    x = torch.as_tensor(digits.x_train, dtype=torch.float32) / 255
    _train(model, x, torch.as_tensor(digits.y_train))
    path = _export(model, torch.zeros(1, 64), tmp_path_factory.mktemp("mlp") / "mlp.onnx", input_names=["x"],
                   output_names=["logits"], dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}})
    return model, path


def _onnxruntime(path_or_model, x):
    """onnxruntime on the model, one image at a time (batch-1 exports accept nothing else)."""
    proto = path_or_model if isinstance(path_or_model, onnx.ModelProto) else onnx.load(str(path_or_model))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def _agreement(graph, source, pixels, source_shape):
    """max|Δ| / max|logit| of the imported graph (lowbit's pixel/256 NHWC) against onnxruntime
    (pixel/255, NCHW), computed here independently of the frontend's own check."""
    x = pixels.astype(np.float32) / 255
    if len(source_shape) == 3:
        c, h, w = source_shape
        x = x.reshape(-1, h, w, c).transpose(0, 3, 1, 2)
    theirs = _onnxruntime(source, np.ascontiguousarray(x.reshape(-1, *source_shape)))
    with torch.no_grad():
        ours = graph(to_input(pixels)).numpy()
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max()), ours, theirs


# ---- torch exports --------------------------------------------------------------------------------
def test_cnn_export_converts_and_agrees_with_onnxruntime(cnn, digits):
    model, path = cnn
    imported = convert_onnx(path)
    assert imported.source_shape == (1, 8, 8) and imported.graph.input_shape == (8, 8, 1)
    assert [op for op in imported.ops if op not in ("Identity", "Constant")] == [
        "Conv", "BatchNormalization", "Relu", "MaxPool", "Conv", "BatchNormalization", "Relu", "MaxPool", "Flatten",
        "Gemm", "Relu", "Gemm"]
    layers = imported.graph.layers
    assert [l.kind for l in layers.values()] == ["conv2d", "batchnorm", "relu", "maxpool2d", "conv2d", "batchnorm",
                                                  "relu", "maxpool2d", "flatten", "linear", "relu", "linear"]
    assert isinstance(layers["bn1"], BatchNorm) and torch.equal(layers["bn1"].running_var, model.bn2.running_var)
    assert layers["conv1"].bias is None and torch.equal(layers["conv0"].weight, model.conv1.weight)
    # the dense layer after the NCHW flatten reads NHWC columns: permuted, not equal
    assert not torch.equal(layers["fc0"].weight, model.fc1.weight)

    graph = from_onnx(path, check_pixels=digits.x_test)
    check = graph.import_check
    assert check["source"] == f"ONNX model {path}" and check["images"] == len(digits.x_test)
    assert check["max_rel_diff"] <= TOL
    rel, ours, theirs = _agreement(graph, path, digits.x_test, (1, 8, 8))
    assert rel <= TOL
    accuracy = float((ours.argmax(1) == digits.y_test).mean())
    assert accuracy == float((theirs.argmax(1) == digits.y_test).mean()) and accuracy > 0.8


def test_mlp_export_with_symbolic_batch(mlp, digits):
    model, path = mlp
    graph = from_onnx(path, check_pixels=digits.x_test)
    assert graph.input_shape == (64,) and [l.kind for l in graph.layers.values()] == [
        "linear", "relu", "linear", "relu", "linear"]
    rel, _, _ = _agreement(graph, path, digits.x_test, (64,))
    assert rel <= TOL and graph.import_check["max_rel_diff"] <= TOL
    with torch.no_grad():  # and the torch model itself
        torch_out = model(torch.as_tensor(digits.x_test, dtype=torch.float32) / 255).numpy()
        ours = graph(to_input(digits.x_test)).numpy()
    assert np.abs(ours - torch_out).max() <= TOL * np.abs(torch_out).max()


def test_default_check_is_256_seeded_random_images(mlp):
    graph = from_onnx(mlp[1])
    assert graph.import_check["images"] == 256 and graph.import_check["max_rel_diff"] <= TOL


def test_batch_one_export_runs_all_images_in_one_reference_call(cnn, digits):
    imported = convert_onnx(cnn[1])
    x = np.random.default_rng(0).random((300, 1, 8, 8), dtype=np.float32)
    out = imported.reference(x)  # the original's batch dim is fixed at 1: a freed copy runs it
    assert out.shape == (300, 10)
    np.testing.assert_allclose(out, _onnxruntime(cnn[1], x), rtol=0, atol=1e-5)


def test_preprocessing_folded(mlp, cnn, digits):
    pre = Preprocessing(255.0, (0.3,), (0.25,))  # the model was exported taking (pixel/255 - 0.3)/0.25
    graph = from_onnx(mlp[1], preprocessing=pre, check_pixels=digits.x_test)
    assert graph.import_check["max_rel_diff"] <= TOL
    graph = from_onnx(cnn[1], preprocessing=Preprocessing(1.0), check_pixels=digits.x_test)
    assert graph.import_check["max_rel_diff"] <= TOL


# ---- the check really compares ----------------------------------------------------------------------
def test_check_fails_on_a_tampered_reference(cnn, digits):
    imported = convert_onnx(cnn[1])
    real = imported.reference
    imported.reference = lambda x: real(x) * 1.001
    with pytest.raises(ModelImportError, match=r"disagrees with ONNX model .*lenet\.onnx on 359 images.*nothing "
                                               r"was written"):
        finish_import(imported, digits.x_test)


def test_check_fails_without_the_nchw_permutation(cnn, digits, monkeypatch):
    monkeypatch.setattr(onnx_frontend, "nchw_columns", lambda weight, chw: weight)
    with pytest.raises(ModelImportError, match=r"disagrees with ONNX model"):
        from_onnx(cnn[1], check_pixels=digits.x_test)


# ---- the imported graph quantizes -----------------------------------------------------------------
def test_imported_cnn_quantizes_and_runs_in_the_golden_model(cnn, digits):
    graph = from_onnx(cnn[1], check_pixels=digits.x_test)
    net = quantize(graph, "pow2", 4, 4, digits.x_train[:500], progress=False)
    result = run_network(net, digits.x_test, raw_pixels=True, keep="logits")
    assert result.logits.shape == (len(digits.x_test), 10)
    assert float((result.classes == digits.y_test).mean()) > 0.8  # measured 0.905 (float 0.947)


# ---- hand-built graphs ------------------------------------------------------------------------------
def _model(nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, "handmade", inputs, outputs,
                              [numpy_helper.from_array(np.asarray(v), name) for name, v in inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _tensor(name, *dims):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(dims))


def _run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _assert_matches(model, features):
    """The converted graph against onnxruntime on 200 random inputs of the source's shape."""
    imported = convert_onnx(model)
    x = np.random.default_rng(3).normal(size=(200, *imported.source_shape)).astype(np.float32)
    nhwc = x.transpose(0, 2, 3, 1) if x.ndim == 4 else x
    with torch.no_grad():
        ours = imported.graph(torch.as_tensor(np.ascontiguousarray(nhwc))).numpy()
    theirs = _run(model, x) if model.graph.input[0].type.tensor_type.shape.dim[0].dim_param else np.concatenate(
        [_run(model, x[i:i + 1]) for i in range(len(x))])
    assert ours.shape == theirs.shape == (200, features)
    assert np.abs(ours - theirs).max() <= TOL * np.abs(theirs).max()
    np.testing.assert_allclose(imported.reference(x), theirs, rtol=0, atol=1e-5)
    return imported


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_alpha_beta_trans_b(trans_b):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 5) if trans_b else (5, 3)).astype(np.float32)  # B: [out, in] or [in, out]
    c = rng.normal(size=(1, 3)).astype(np.float32)
    model = _model([helper.make_node("Gemm", ["x", "w", "c"], ["y"], alpha=0.5, beta=2.0, transB=trans_b)],
                   [_tensor("x", "n", 5)], [_tensor("y", "n", 3)], [("w", w), ("c", c)])
    imported = _assert_matches(model, 3)
    fc = imported.graph.layers["fc0"]
    np.testing.assert_allclose(fc.weight.detach().numpy(), 0.5 * (w if trans_b else w.T), rtol=1e-6)
    np.testing.assert_allclose(fc.bias.detach().numpy(), 2.0 * c[0], rtol=1e-6)


def test_matmul_add_is_a_linear_with_bias_and_identity_dropout_vanish():
    rng = np.random.default_rng(1)
    w1, b1, w2 = (rng.normal(size=s).astype(np.float32) for s in ((6, 4), (4,), (4, 3)))
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Add", ["b1", "h"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["r"]), helper.make_node("Identity", ["r"], ["i"]),
             helper.make_node("Dropout", ["i"], ["d"]), helper.make_node("MatMul", ["d", "w2"], ["y"])]
    model = _model(nodes, [_tensor("x", "n", 6)], [_tensor("y", "n", 3)], [("w1", w1), ("b1", b1), ("w2", w2)])
    imported = _assert_matches(model, 3)
    assert list(imported.graph.layers) == ["fc0", "relu0", "fc1"] and imported.graph.layers["fc1"].bias is None
    np.testing.assert_array_equal(imported.graph.layers["fc0"].bias.detach().numpy(), b1)
    assert imported.ops == ["MatMul", "Add", "Relu", "Identity", "Dropout", "MatMul"]


def _conv_reshape_model(shape_const, batch=1, *, pads=(1, 1, 1, 1), strides=(2, 1)):
    rng = np.random.default_rng(2)
    w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    b = rng.normal(size=(1, 4, 1, 1)).astype(np.float32)
    oh, ow = (5 + pads[0] + pads[2] - 3) // strides[0] + 1, (6 + pads[1] + pads[3] - 3) // strides[1] + 1
    fc = rng.normal(size=(4 * oh * ow, 7)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=list(pads), strides=list(strides)),
             helper.make_node("Add", ["c", "b"], ["cb"]), helper.make_node("Relu", ["cb"], ["r"]),
             helper.make_node("Constant", [], ["shape"], value=numpy_helper.from_array(np.array(shape_const,
                                                                                                 np.int64))),
             helper.make_node("Reshape", ["r", "shape"], ["f"]), helper.make_node("MatMul", ["f", "fc"], ["y"])]
    return _model(nodes, [_tensor("x", batch, 3, 5, 6)], [_tensor("y", batch, 7)], [("w", w), ("b", b), ("fc", fc)])


@pytest.mark.parametrize("shape_const, batch", [([1, -1], 1), ([0, -1], "n"), ([-1, 4 * 3 * 6], "n")])
def test_reshape_flatten_of_a_strided_padded_conv(shape_const, batch):
    imported = _assert_matches(_conv_reshape_model(shape_const, batch), 7)
    conv = imported.graph.layers["conv0"]
    assert isinstance(conv, Conv2d) and conv.stride == (2, 1) and conv.padding == (1, 1)
    assert isinstance(imported.graph.layers["flatten0"], Flatten) and imported.graph.input_shape == (5, 6, 3)
    assert isinstance(imported.graph.layers["fc0"], Linear)


def test_reshape_flatten_quantizes(digits):
    """A hand-built graph on 8x8x1 digits-shaped inputs through from_onnx and the pow2 quantizer."""
    rng = np.random.default_rng(4)
    w, fc = rng.normal(size=(3, 1, 3, 3)).astype(np.float32), rng.normal(size=(3 * 6 * 6, 10)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Reshape", ["r", "s"], ["f"]), helper.make_node("MatMul", ["f", "fc"], ["y"])]
    model = _model(nodes, [_tensor("x", 1, 1, 8, 8)], [_tensor("y", 1, 10)],
                   [("w", w), ("fc", fc), ("s", np.array([1, -1], np.int64))])
    graph = from_onnx(model, check_pixels=digits.x_test)
    assert graph.import_check["max_rel_diff"] <= TOL
    net = quantize(graph, "pow2", 4, 4, digits.x_train[:300], progress=False)
    assert run_network(net, digits.x_test[:50], raw_pixels=True, keep="logits").logits.shape == (50, 10)


# ---- refusals -----------------------------------------------------------------------------------------
def _dense_after(node, extra_inits=(), in_dims=("n", 4), out=4, inputs=()):
    """``node`` (reading x, writing h) then a Gemm to ``y``."""
    w = np.eye(out, dtype=np.float32)
    nodes = [node, helper.make_node("Gemm", ["h", "wy"], ["y"], transB=1)]
    return _model(nodes, [_tensor("x", *in_dims), *inputs], [_tensor("y", in_dims[0], out)],
                  [("wy", w), *extra_inits])


@pytest.mark.parametrize("make, match", [
    (lambda: _dense_after(helper.make_node("Sigmoid", ["x"], ["h"], name="act")),
     r"node 'act' \(Sigmoid\) is not supported; supported: Gemm, MatMul, .*Conv, BatchNormalization, Relu, MaxPool, "
     r"Flatten, Reshape"),
    (lambda: _model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["x", "r"], ["y"], name="res")],
                    [_tensor("x", "n", 4)], [_tensor("y", "n", 4)]),
     r"node 'res' \(Add\): an Add of two computed tensors \(a residual connection\) is not supported"),
    (lambda: _model([helper.make_node("Gemm", ["x", "w"], ["g"], transB=1), helper.make_node("Relu", ["g"], ["r"]),
                     helper.make_node("Add", ["g", "r"], ["y"], name="res")],
                    [_tensor("x", "n", 4)], [_tensor("y", "n", 4)], [("w", np.eye(4, dtype=np.float32))]),
     r"node 'res' \(Add\): an Add of two computed tensors \(a residual connection\) is not supported"),
    (lambda: _model([helper.make_node("Gemm", ["x", "w"], ["g"], transB=1),
                     helper.make_node("Relu", ["g"], ["r"]), helper.make_node("Add", ["r", "r"], ["y"], name="dbl")],
                    [_tensor("x", "n", 4)], [_tensor("y", "n", 4)], [("w", np.eye(4, dtype=np.float32))]),
     r"node 'dbl' \(Add\): an Add of two computed tensors \(a residual connection\) is not supported"),
    (lambda: _model([helper.make_node("Conv", ["x", "w"], ["y"], group=2, name="gc")], [_tensor("x", "n", 4, 5, 5)],
                    [_tensor("y", "n", 4, 3, 3)], [("w", np.ones((4, 2, 3, 3), np.float32))]),
     r"node 'gc' \(Conv\): grouped convolution \(group=2\) is not supported; lowbit takes group=1"),
    (lambda: _model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[0, 0, 1, 1], name="ac")],
                    [_tensor("x", "n", 1, 5, 5)], [_tensor("y", "n", 1, 4, 4)], [("w", np.ones((1, 1, 3, 3),
                                                                                               np.float32))]),
     r"node 'ac' \(Conv\): asymmetric pads \[0, 0, 1, 1\] \(top, left, bottom, right\) are not supported"),
    (lambda: _model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("AveragePool", ["r"], ["y"],
                                                                              kernel_shape=[2, 2], name="ap")],
                    [_tensor("x", "n", 1, 4, 4)], [_tensor("y", "n", 1, 2, 2)]),
     r"node 'ap' \(AveragePool\) is not supported"),
    (lambda: _dense_after(helper.make_node("Gemm", ["x", "wx"], ["h"], name="fc"), inputs=[_tensor("wx", 4, 4)]),
     r"node 'fc' \(Gemm\): takes its weight B 'wx' from a graph input; lowbit needs weights as initializers"),
    (lambda: _model([helper.make_node("Relu", ["x"], ["r"]),
                     helper.make_node("BatchNormalization", ["r", "s", "b", "m", "v"], ["y"], name="bn")],
                    [_tensor("x", "n", 2)], [_tensor("y", "n", 2)],
                    [(k, np.ones(2, np.float32)) for k in "sbmv"]),
     r"node 'bn' \(BatchNormalization\): batch norm must directly follow Conv, Gemm or MatMul"),
    (lambda: _model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Reshape", ["r", "s"], ["y"],
                                                                              name="rs")],
                    [_tensor("x", "n", 2, 3, 3)], [_tensor("y", "n", 6, 3)], [("s", np.array([0, 6, 3], np.int64))]),
     r"node 'rs' \(Reshape\): Reshape to \[0, 6, 3\] is not supported; lowbit takes a flatten to \[N, -1\]"),
    (lambda: _model([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], ceil_mode=1, name="mp")],
                    [_tensor("x", "n", 1, 5, 5)], [_tensor("y", "n", 1, 3, 3)]),
     r"node 'mp' \(MaxPool\): ceil_mode=1 is not supported"),
    (lambda: _model([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], pads=[1, 1, 1, 1], name="mp")],
                    [_tensor("x", "n", 1, 4, 4)], [_tensor("y", "n", 1, 3, 3)]),
     r"node 'mp' \(MaxPool\): pads \[1, 1, 1, 1\] are not supported; lowbit's max-pool does not pad"),
    (lambda: _model([helper.make_node("MatMul", ["w", "x"], ["y"], name="wx")], [_tensor("x", "n", 4)],
                    [_tensor("y", "n", 4)], [("w", np.eye(4, dtype=np.float32))]),
     r"node 'wx' \(MatMul\): reads the chain's tensor 'x' as a parameter, not as its data input"),
    (lambda: _model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Neg", ["w0"], ["w"]),
                     helper.make_node("MatMul", ["r", "w"], ["y"], name="mm")], [_tensor("x", "n", 4)],
                    [_tensor("y", "n", 4)], [("w0", np.eye(4, dtype=np.float32))]),
     r"node #1 \(output 'w'\) \(Neg\) is not supported"),
    (lambda: _model([helper.make_node("Conv", ["x", "w"], ["y"], name="cv")], [_tensor("x", "n", 3, 5, 5)],
                    [_tensor("y", "n", 4, 3, 3)], [("w", np.ones((4, 2, 3, 3), np.float32))]),
     r"node 'cv' \(Conv\): conv2d 2->4 3x3 \(no bias\) takes images of shape \(height, width, 2\), but its "
     r"input is \[3, 5, 5\]: \[C, H, W\] without the batch axis"),
])
def test_unsupported_graphs_are_refused_naming_the_node(make, match):
    with pytest.raises(ModelImportError, match=match) as refused:
        convert_onnx(make())
    assert str(refused.value).startswith("ONNX model handmade: node ")
    assert "supported: Gemm, MatMul, Add (a constant bias right after Gemm, MatMul or Conv), Conv, " in str(refused.value)


def test_final_softmax_is_refused_with_a_hint(mlp):
    model = onnx.load(str(mlp[1]))
    last = model.graph.node[-1]
    last.output[0] = "pre_softmax"
    model.graph.node.append(helper.make_node("Softmax", ["pre_softmax"], ["logits"], axis=1, name="sm"))
    with pytest.raises(ModelImportError, match=r"node 'sm' \(Softmax\) is not supported \(drop the final softmax: "
                                               r"lowbit's last layer emits the logits"):
        convert_onnx(model)


def test_input_must_be_nchw_or_features_with_batch_first():
    model = _model([helper.make_node("MatMul", ["w", "x"], ["y"])], [_tensor("x", 4, "n")], [_tensor("y", 4, "n")],
                   [("w", np.eye(4, dtype=np.float32))])
    with pytest.raises(ModelImportError, match=r"ONNX model handmade: input 'x' must be \[N, C, H, W\] or \[N, F\] "
                                               r"with fixed C, H, W or F, not \[4, 'n'\]"):
        convert_onnx(model)


def test_conversion_leaves_torch_rng_alone(mlp):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    convert_onnx(mlp[1])
    assert torch.equal(torch.rand(3), expected)


def test_qonnx_model_is_refused_pointing_at_lowbit_import():
    nodes = [helper.make_node("Quant", ["x", "s", "z", "bw"], ["q"], domain="qonnx.custom_op.general", name="q0",
                              signed=1, narrow=0, rounding_mode="ROUND"),
             helper.make_node("Gemm", ["q", "w"], ["y"], transB=1)]
    model = _model(nodes, [_tensor("x", 1, 4)], [_tensor("y", 1, 4)],
                   [("s", np.float32(0.5)), ("z", np.float32(0)), ("bw", np.float32(4)),
                    ("w", np.eye(4, dtype=np.float32))])
    with pytest.raises(ModelImportError, match=r"is a QONNX \(quantized\) model \(node 'q0' \(Quant\).*: use "
                                               r"`lowbit import FILE -o NET\.npz`"):
        convert_onnx(model)


def test_qcdq_model_is_refused_pointing_at_export_qonnx():
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="ql"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
             helper.make_node("Gemm", ["d", "w"], ["y"], transB=1)]
    model = _model(nodes, [_tensor("x", "n", 4)], [_tensor("y", "n", 4)],
                   [("s", np.float32(0.5)), ("z", np.uint8(0)), ("w", np.eye(4, dtype=np.float32))])
    with pytest.raises(ModelImportError, match=r"is a QCDQ export \(node 'ql' \(QuantizeLinear\)\): lowbit does not "
                                               r"read that flavour.*Brevitas's `export_qonnx` \(QONNX\).*or export "
                                               r"the float model"):
        convert_onnx(model)


def test_real_brevitas_exports_are_refused_by_flavour(tmp_path):
    """Brevitas's own QONNX and QCDQ exports of a 4-bit linear layer (not just hand-made nodes)."""
    import brevitas.nn as qnn
    from brevitas.export import export_onnx_qcdq, export_qonnx

    torch.manual_seed(0)
    model = nn.Sequential(qnn.QuantIdentity(bit_width=4, return_quant_tensor=True),
                          qnn.QuantLinear(16, 4, bias=True, weight_bit_width=4)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(model, torch.zeros(1, 16), export_path=str(tmp_path / "q.onnx"), dynamo=False)
        export_onnx_qcdq(model, torch.zeros(1, 16), export_path=str(tmp_path / "qcdq.onnx"), dynamo=False)
    with pytest.raises(ModelImportError, match=r"q\.onnx is a QONNX \(quantized\) model .*\(Quant\), domain "
                                               r"'qonnx\.custom_op\.general'\).*use `lowbit import FILE -o NET\.npz`"):
        convert_onnx(tmp_path / "q.onnx")
    with pytest.raises(ModelImportError, match=r"qcdq\.onnx is a QCDQ export .*\(QuantizeLinear\)\): lowbit does not "
                                               r"read"):
        convert_onnx(tmp_path / "qcdq.onnx")


def test_unreadable_files_are_refused_naming_the_path(cnn, tmp_path):
    data = cnn[1].read_bytes()
    (tmp_path / "half.onnx").write_bytes(data[:len(data) // 2])
    (tmp_path / "noise.onnx").write_bytes(np.random.default_rng(0).bytes(5000))
    for name in ("half.onnx", "noise.onnx"):
        with pytest.raises(ModelImportError, match=rf"ONNX model .*{name} cannot be read \(truncated or not an ONNX "
                                                   r"file\?\): DecodeError"):
            convert_onnx(tmp_path / name)
    with pytest.raises(ModelImportError, match=r"ONNX model .*missing\.onnx: no such file"):
        convert_onnx(tmp_path / "missing.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelImportError, match=r"empty\.onnx has no nodes"):
        convert_onnx(tmp_path / "empty.onnx")


def test_invalid_model_is_refused_by_the_checker():
    model = _model([helper.make_node("Relu", ["nowhere"], ["y"])], [_tensor("x", "n", 4)], [_tensor("y", "n", 4)])
    with pytest.raises(ModelImportError, match=r"is not a valid ONNX model: ValidationError"):
        convert_onnx(model)


# ---- the figure: a ~10 MB model with its check on 1,000 images ---------------------------------------
@pytest.mark.slow
def test_ten_megabyte_mlp_imports_and_checks_on_1000_images_in_under_20_s(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 1024),
                          nn.ReLU(), nn.Linear(1024, 10))
    path = _export(model, torch.zeros(1, 784), tmp_path / "big.onnx")
    assert path.stat().st_size > 10e6
    pixels = np.random.default_rng(0).integers(0, 256, (1000, 784), dtype=np.uint8)
    start = time.perf_counter()
    graph = from_onnx(path, check_pixels=pixels)
    seconds = time.perf_counter() - start
    print(f"{path.stat().st_size / 1e6:.1f} MB ONNX MLP: import + check on 1,000 images {seconds:.2f} s, "
          f"max rel diff {graph.import_check['max_rel_diff']:.2e}")
    assert graph.import_check["max_rel_diff"] <= TOL and seconds < 20
    assert math.prod(graph.input_shape) == 784
