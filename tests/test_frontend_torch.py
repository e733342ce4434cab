"""The PyTorch frontend (sw/frontends/torch.py): a LeNet-like CNN with trained batch norms and an MLP,
converted from the module and from torch.export .pt2 files, agree with the module on digits test
images; the check that proves it fails when it should; preprocessing folds; the import quantizes and
runs in the golden model; every refusal says which node, which op and what is supported."""

import copy
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lowbit.sw.datasets import load_dataset
from lowbit.sw.frontends.common import Imported, ModelImportError, Preprocessing, finish_import, source_input
from lowbit.sw.frontends.graph import BatchNorm, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU
from lowbit.sw.frontends.torch import SUPPORTED, convert_torch, from_torch
from lowbit.sw.frontends.torch_files import load_torch_file
from lowbit.sw.golden import run_network
from lowbit.sw.quant import quantize
from lowbit.sw.train import to_input

TOL = 1e-4
IMAGE = torch.zeros(2, 1, 8, 8)
FLAT = torch.zeros(2, 64)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


class LeNetish(nn.Module):
    """conv-bn-relu-maxpool twice, torch.flatten(x, 1) of NCHW, linear-bn1d-relu-dropout, linear (8x8x1)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.conv2, self.bn2 = nn.Conv2d(6, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.fc1, self.bn3, self.drop = nn.Linear(8 * 2 * 2, 24), nn.BatchNorm1d(24), nn.Dropout(0.25)
        self.fc2 = nn.Linear(24, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        x = torch.flatten(x, 1)
        return self.fc2(self.drop(F.relu(self.bn3(self.fc1(x)))))


def _mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def _train(model, digits, image: bool, steps=80):
    """Seeded Adam steps in train mode: learnt weights and nontrivial batch-norm statistics."""
    x = torch.as_tensor(digits.x_train, dtype=torch.float32) / 255.0
    x = x.reshape(-1, 1, 8, 8) if image else x
    y = torch.as_tensor(digits.y_train)
    opt = torch.optim.Adam(model.parameters(), 0.02)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (128,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def lenet(digits):
    torch.manual_seed(0)
    return _train(LeNetish(), digits, image=True)


@pytest.fixture(scope="module")
def mlp(digits):
    torch.manual_seed(1)
    return _train(_mlp(), digits, image=False)


def _module_logits(model, digits, image=True, pre=Preprocessing()):
    shape = (1, 8, 8) if image else (64,)
    x = source_input(digits.x_test, (8, 8, 1) if image else (64,), shape, pre)
    with torch.no_grad():
        return model(torch.as_tensor(x)).numpy()


# ---- agreement with the module ------------------------------------------------------------
def test_lenet_from_torch_agrees_with_the_module(lenet, digits):
    assert lenet.bn1.running_var.std() > 0.01 and lenet.bn3.running_mean.abs().max() > 0.01  # trained statistics
    lenet.train()  # the caller's module: exported from a copy, left as it was
    graph = from_torch(lenet, IMAGE, check_pixels=digits.x_test)
    assert lenet.training
    lenet.eval()
    assert graph.input_shape == (8, 8, 1)
    assert [type(l) for l in graph.layers.values()] == [Conv2d, BatchNorm, ReLU, MaxPool2d] * 2 + [
        Flatten, Linear, BatchNorm, ReLU, Dropout, Linear]
    assert list(graph.layers) == ["conv0", "bn0", "relu0", "pool0", "conv1", "bn1", "relu1", "pool1", "flatten",
                                  "fc0", "bn2", "relu2", "drop0", "fc1"]
    assert graph.import_check["images"] == len(digits.x_test) == 359
    assert graph.import_check["max_rel_diff"] <= TOL
    assert graph.bn2.eps == lenet.bn3.eps and torch.equal(graph.bn2.running_var, lenet.bn3.running_var)
    ours = graph(to_input(digits.x_test)).detach().numpy()
    theirs = _module_logits(lenet, digits)
    assert np.abs(ours - theirs).max() <= TOL * np.abs(theirs).max()
    assert (ours.argmax(1) == digits.y_test).mean() > 0.8  # it learnt something: the logits mean something


def test_default_check_is_256_random_images(mlp):
    graph = from_torch(mlp, FLAT)
    assert graph.import_check["images"] == 256 and graph.import_check["max_rel_diff"] <= TOL
    assert graph.import_check["source"] == "torch module (torch.nn.modules.container.Sequential)"


def test_mlp_flat_input(mlp, digits):
    imported = convert_torch(mlp, FLAT)
    assert imported.source_shape == (64,) and imported.graph.input_shape == (64,)
    assert [type(l) for l in imported.graph.layers.values()] == [Linear, ReLU, Linear]  # flatten of [N, 64]: none
    assert imported.ops == ["aten.flatten", "aten.linear", "aten.relu"]
    graph, rel = finish_import(imported, digits.x_test)
    assert rel <= TOL


def test_pt2_static_batch_one(lenet, digits, tmp_path):
    path = tmp_path / "lenet.pt2"
    torch.export.save(torch.export.export(copy.deepcopy(lenet).eval(), (torch.zeros(1, 1, 8, 8),)), path)
    imported = load_torch_file(path, image_shape=(8, 8))
    assert imported.source == "torch.export program lenet.pt2" and imported.source_shape == (1, 8, 8)
    assert imported.reference(np.zeros((3, 1, 8, 8), np.float32)).shape == (3, 10)  # batch 1 program, batch 3
    graph, rel = finish_import(imported, digits.x_test)
    assert rel <= TOL
    assert np.abs(graph(to_input(digits.x_test)).detach().numpy() - _module_logits(lenet, digits)).max() <= (
        TOL * np.abs(_module_logits(lenet, digits)).max())


def test_pt2_dynamic_batch_decomposed(lenet, mlp, digits, tmp_path):
    """A program saved after run_decompositions(): convolution, _native_batch_norm_legit_no_training,
    max_pool2d_with_indices, view, addmm and permute of the weights."""
    batch = torch.export.Dim("batch")
    for name, model, example in (("lenet", lenet, torch.zeros(4, 1, 8, 8)), ("mlp", mlp, torch.zeros(4, 1, 8, 8))):
        program = torch.export.export(copy.deepcopy(model).eval(), (example,), dynamic_shapes=({0: batch},))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = program.run_decompositions()
        torch.export.save(program, tmp_path / f"{name}.pt2")
        imported = load_torch_file(tmp_path / f"{name}.pt2", image_shape=(8, 8, 1))
        assert "aten.addmm" in imported.ops
        assert imported.source_shape == (1, 8, 8) and imported.graph.input_shape == (8, 8, 1)
        _, rel = finish_import(imported, digits.x_test)
        assert rel <= TOL
    assert "aten._native_batch_norm_legit_no_training" in load_torch_file(tmp_path / "lenet.pt2").ops


def test_pt2_against_other_images_refused(mlp, tmp_path):
    torch.export.save(torch.export.export(mlp, (torch.zeros(1, 1, 8, 8),)), tmp_path / "m.pt2")
    with pytest.raises(ModelImportError, match=r"takes inputs of shape \(1, 8, 8\) .* the data's images are 28x28x1"):
        load_torch_file(tmp_path / "m.pt2", image_shape=(28, 28))


def test_check_really_compares(lenet, digits):
    """Without the NCHW column permutation the graph computes another function, and the check says so;
    so does a reference that disagrees by 1%."""
    imported = convert_torch(lenet, IMAGE)
    unpermuted = copy.deepcopy(imported)
    with torch.no_grad():
        unpermuted.graph.fc0.weight.copy_(lenet.fc1.weight)  # the source's (c, h, w) columns, as they were
    assert not torch.equal(imported.graph.fc0.weight, lenet.fc1.weight)
    with pytest.raises(ModelImportError, match=r"disagrees with torch module \(.*LeNetish\) on 359 images"):
        finish_import(unpermuted, digits.x_test)
    off = Imported(imported.graph, imported.source_shape, lambda x: imported.reference(x) * 1.01, "the tampered one")
    with pytest.raises(ModelImportError, match="disagrees with the tampered one on 359 images.*nothing was written"):
        finish_import(off, digits.x_test)


def test_relu_after_pool_and_bias_add_are_exact(digits):
    class PoolThenRelu(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.w, self.b = nn.Conv2d(1, 4, 3), nn.Parameter(torch.randn(10, 36)), nn.Parameter(
                torch.randn(10))

        def forward(self, x):  # relu(pool(conv)) (classic LeNet code); a matmul plus a bias add
            return torch.flatten(F.relu(F.max_pool2d(self.conv(x), 2)), 1) @ self.w.t() + self.b

    torch.manual_seed(2)
    graph = from_torch(PoolThenRelu(), IMAGE, check_pixels=digits.x_test)
    assert list(graph.layers) == ["conv0", "relu0", "pool0", "flatten", "fc0"]
    assert graph.fc0.bias is not None and graph.import_check["max_rel_diff"] <= TOL


# ---- preprocessing ------------------------------------------------------------------------
def test_normalize_folded(mlp, lenet, digits):
    pre = Preprocessing(255.0, (0.3,), (0.45,))
    graph = from_torch(mlp, FLAT, preprocessing=pre, check_pixels=digits.x_test)
    assert graph.import_check["max_rel_diff"] <= TOL
    ours = graph(to_input(digits.x_test)).detach().numpy()
    theirs = _module_logits(mlp, digits, image=False, pre=pre)
    assert np.abs(ours - theirs).max() <= TOL * np.abs(theirs).max()
    # a padded first convolution takes a std, not a mean
    assert from_torch(lenet, IMAGE, preprocessing=Preprocessing(255.0, (0.0,), (0.5,)),
                      check_pixels=digits.x_test).import_check["max_rel_diff"] <= TOL
    with pytest.raises(ModelImportError, match="normalize with a nonzero mean cannot be folded into layer 'conv0'"):
        from_torch(lenet, IMAGE, preprocessing=pre, check_pixels=digits.x_test)


# ---- onwards: quantization and the golden model ---------------------------------------------
def test_imported_graph_quantizes_and_runs(lenet, digits):
    graph = from_torch(lenet, IMAGE, check_pixels=digits.x_test)
    float_classes = graph(to_input(digits.x_test)).argmax(1).numpy()
    net = quantize(graph, "pow2", 4, 4, digits.x_train[:256], progress=False)
    result = run_network(net, digits.x_test, raw_pixels=True, keep="logits")
    assert result.logits.shape == (359, 10)
    # measured: float 97.0%, pow2 W4A4 golden 90.0% on the 359 test images (90.5% agreement with the float classes)
    assert (result.classes == digits.y_test).mean() > 0.8 and (result.classes == float_classes).mean() > 0.8


# ---- refusals -----------------------------------------------------------------------------
class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(64, 64), nn.Linear(64, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)) + x)


class _DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(x) if x.sum() > 0 else -self.fc(x)


class _TwoPaths(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.out = nn.Linear(64, 8), nn.Linear(64, 8), nn.Linear(16, 10)

    def forward(self, x):
        return self.out(torch.cat([self.a(x), self.b(x)], 1))


REFUSED = {
    "sigmoid": (lambda: nn.Sequential(nn.Linear(64, 10), nn.Sigmoid()), FLAT,
                r"node 'sigmoid' \(op aten.sigmoid, in module '1' \(Sigmoid\)\) is not supported; the torch importer "
                r"supports linear"),
    "residual": (_Residual, FLAT, r"node 'add' \(op aten.add, in the top module \(_Residual\)\) combines two "
                                  r"activations \('relu', 'x'\): a residual/skip connection"),
    "two paths": (_TwoPaths, FLAT, r"node 'linear_1' \(op aten.linear, in module 'b' \(Linear\)\) reads 'x', not "
                                   r"the latest layer's output \('linear'\): a branch"),
    "grouped conv": (lambda: nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten(), nn.Linear(144, 10)),
                     torch.zeros(1, 2, 8, 8), r"node 'conv2d' \(op aten.conv2d, in module '0' \(Conv2d\)\) is a "
                                              r"grouped convolution \(groups=2\); only groups=1"),
    "dilation": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3, dilation=2), nn.Flatten(), nn.Linear(64, 10)), IMAGE,
                 r"node 'conv2d' .* is a dilated convolution \(dilation=\[2, 2\]\)"),
    "avg pool": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                                       nn.Linear(36, 10)), IMAGE,
                 r"node 'avg_pool2d' \(op aten.avg_pool2d, in module '2' \(AvgPool2d\)\) is not supported"),
    "pool padding": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2, padding=1), nn.Flatten(),
                                           nn.Linear(64, 10)), IMAGE,
                     r"node 'max_pool2d' \(op aten.max_pool2d, .*\) pads its input \(padding=\[1, 1\]\)"),
    "ceil mode": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(4, ceil_mode=True),
                                        nn.Flatten(), nn.Linear(16, 10)), IMAGE, "uses ceil_mode=True; only floor"),
    "log_softmax": (lambda: nn.Sequential(nn.Linear(64, 10), nn.LogSoftmax(1)), FLAT,
                    r"is not supported \(lowbit's last layer emits logits: drop the log_softmax"),
    "control flow": (_DataDependent, FLAT, r"torch.export could not trace torch module \(.*_DataDependent\) on an "
                                           r"input of shape \(2, 64\): GuardOnDataDependentSymNode.*test_frontend_torch.py:\d+ "
                                           r"in forward, code: return self.fc\(x\) if x.sum\(\) > 0.*no "
                                           "data-dependent control flow"),
    "ungroupable": (lambda: nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.BatchNorm1d(16), nn.Linear(16, 10)), FLAT,
                    r"lowbit cannot group these layers .*: layer 'bn0' \(batchnorm\) must directly follow a layer "
                    r"with weights"),
    "image output": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3)), IMAGE, r"returns per-example outputs of shape "
                                                                        r"\(4, 6, 6\)"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refusals(case):
    make, example, match = REFUSED[case]
    torch.manual_seed(0)
    with pytest.raises(ModelImportError, match=match):
        convert_torch(make(), example)


def test_refusal_lists_what_is_supported():
    with pytest.raises(ModelImportError) as err:
        convert_torch(nn.Sequential(nn.Linear(64, 10), nn.Tanh()), FLAT)
    assert str(err.value).endswith(SUPPORTED)


def test_training_mode_program_refused(mlp, tmp_path):
    model = copy.deepcopy(mlp)
    model.insert(2, nn.BatchNorm1d(32))
    torch.export.save(torch.export.export(model.train(), (torch.zeros(4, 1, 8, 8),)), tmp_path / "train.pt2")
    with pytest.raises(ModelImportError, match=r"node 'batch_norm' .* is a batch norm in training mode .* export the "
                                               r"module after model.eval\(\)"):
        load_torch_file(tmp_path / "train.pt2")


# ---- files --------------------------------------------------------------------------------
def test_pickled_module_needs_trust(lenet, mlp, digits, tmp_path):
    path = tmp_path / "lenet.pt"
    torch.save(lenet, path)
    with pytest.raises(ModelImportError, match=r"lenet.pt' is not a torch.export program \(.pt2\).*loading it runs "
                                               r"code from the file. Pass --trust-pickle .* only for a file you trust, "
                                               r"or save the model with torch.export.save"):
        load_torch_file(path, image_shape=(8, 8))
    imported = load_torch_file(path, trust_pickle=True, image_shape=(8, 8))
    assert imported.source_shape == (1, 8, 8) and finish_import(imported, digits.x_test)[1] <= TOL
    flat = nn.Sequential(*list(mlp)[1:])  # no Flatten: refuses NCHW images, runs on flat rows
    torch.save(flat, tmp_path / "flat.pt")
    imported = load_torch_file(tmp_path / "flat.pt", trust_pickle=True, image_shape=(8, 8))
    assert imported.source_shape == (64,) and finish_import(imported, digits.x_test)[1] <= TOL
    with pytest.raises(ModelImportError, match="a pickled module: tracing it needs the data's image shape"):
        load_torch_file(path, trust_pickle=True)


def test_pickled_non_modules_refused(lenet, tmp_path):
    torch.save(lenet.state_dict(), tmp_path / "weights.pt")
    with pytest.raises(ModelImportError, match=r"holds a dict \(a state_dict or a checkpoint\), not a module: lowbit "
                                               r"needs the whole module .* or, better, a torch.export program"):
        load_torch_file(tmp_path / "weights.pt", trust_pickle=True, image_shape=(8, 8))
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ModelImportError, match=r"holds a builtins.list, not a torch.nn.Module"):
        load_torch_file(tmp_path / "list.pt", trust_pickle=True, image_shape=(8, 8))


def test_missing_truncated_and_corrupted_files(mlp, tmp_path):
    with pytest.raises(ModelImportError, match=r"torch model file '.*nothere.pt2': no such file"):
        load_torch_file(tmp_path / "nothere.pt2")
    good = tmp_path / "good.pt2"
    torch.export.save(torch.export.export(mlp, (torch.zeros(1, 1, 8, 8),)), good)
    data = good.read_bytes()
    (tmp_path / "half.pt2").write_bytes(data[:len(data) // 2])
    (tmp_path / "noise.pt2").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    for name in ("half.pt2", "noise.pt2"):
        with pytest.raises(ModelImportError, match=rf"torch model file '.*{name}' is not a readable torch.export "
                                                   r"program \(.pt2\)"):
            load_torch_file(tmp_path / name)
    (tmp_path / "noise.pt").write_bytes(b"\x80\x04not a pickle at all" * 10)
    with pytest.raises(ModelImportError, match=r"torch model file '.*noise.pt' could not be loaded with torch.load"):
        load_torch_file(tmp_path / "noise.pt", trust_pickle=True, image_shape=(8, 8))
    assert math.prod(load_torch_file(good).graph.input_shape) == 64
