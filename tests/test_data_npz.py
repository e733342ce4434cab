"""The user's own data (``--data FILE.npz``): loading, every refusal with its message, and the commands
that take it (train, quantize, eval read it through the one dataset resolver; sim, bench and explore
take the option too)."""

import numpy as np
import pytest

from lowbit.sw.cli import build_parser, main
from lowbit.sw.datasets import DatasetError, load_dataset, load_npz


def _arrays(n_train=120, n_test=40, shape=(8, 8), classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return {"x_train": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
            "y_train": rng.integers(0, classes, n_train), "x_test": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
            "y_test": rng.integers(0, classes, n_test)}


def _save(tmp_path, name="mine.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("shape, image_shape", [((8, 8), (8, 8)), ((8, 8, 1), (8, 8)), ((6, 5, 3), (6, 5, 3)),
                                                ((64,), (64,))])
def test_loads_images_in_every_layout_as_nhwc_rows(tmp_path, shape, image_shape):
    a = _arrays(shape=shape)
    ds = load_npz(_save(tmp_path, **a))
    assert ds.image_shape == image_shape and ds.classes == 3
    assert ds.x_train.dtype == np.uint8 and ds.x_train.shape == (120, int(np.prod(shape)))
    # rows are the images flattened in (h, w, c) order: pixel (h, w) channel c at (h·W + w)·C + c
    np.testing.assert_array_equal(ds.x_train, a["x_train"].reshape(120, -1))
    np.testing.assert_array_equal(ds.y_test, a["y_test"])
    assert ds.y_train.dtype == np.int64


def test_name_is_stem_and_content_digest_and_load_dataset_takes_the_path(tmp_path):
    p1 = _save(tmp_path, "mine.npz", **_arrays(seed=0))
    p2 = _save(tmp_path / "..", "mine.npz", **_arrays(seed=1))
    n1, n2 = load_npz(p1).name, load_dataset(str(p2)).name
    assert n1.startswith("mine-") and n2.startswith("mine-") and n1 != n2 and len(n1) == len("mine-") + 8
    assert load_dataset(str(p1)).name == n1  # the same content, the same name


def _refused(tmp_path, match, **changes):
    a = _arrays()
    a.update(changes)
    a = {k: v for k, v in a.items() if v is not None}
    with pytest.raises(DatasetError, match=match):
        load_npz(_save(tmp_path, **a))


def test_refusals_name_the_array_and_what_is_allowed(tmp_path):
    _refused(tmp_path, r"must hold the arrays x_train, y_train, x_test, y_test; missing y_test", y_test=None)
    _refused(tmp_path, r"x_train must hold uint8 pixels 0..255, not float32 \(convert it",
             x_train=np.zeros((120, 8, 8), np.float32))
    _refused(tmp_path, r"x_test images have shape \[8, 9\] but x_train images \[8, 8\]",
             x_test=np.zeros((40, 8, 9), np.uint8))
    _refused(tmp_path, r"x_train has 120 images but y_train 119 labels", y_train=np.zeros(119, np.int64))
    _refused(tmp_path, r"y_train labels must be 0..K-1, found -1", y_train=np.full(120, -1))
    _refused(tmp_path, r"y_test has label 7 but y_train only 0..2", y_test=np.full(40, 7))
    _refused(tmp_path, r"y_train must be a 1-D array of integer labels, not 1-D float64", y_train=np.zeros(120))
    _refused(tmp_path, r"y_train must hold at least 2 classes", y_train=np.zeros(120, np.int64))
    _refused(tmp_path, r"x_train must have shape \[n, H, W\], \[n, H, W, C\] or \[n, features\] with n > 0, not \[0, 8, 8\]",
             x_train=np.zeros((0, 8, 8), np.uint8), y_train=np.zeros(0, np.int64))


def test_missing_truncated_and_corrupted_files(tmp_path):
    with pytest.raises(DatasetError, match=r"--data '.*nothere.npz': no such file"):
        load_npz(tmp_path / "nothere.npz")
    good = _save(tmp_path, **_arrays())
    half = tmp_path / "half.npz"
    half.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    junk = tmp_path / "junk.npz"
    junk.write_bytes(np.random.default_rng(0).bytes(5000))
    for bad in (half, junk):
        with pytest.raises(DatasetError, match=r"is not a readable .npz file .*numpy.savez"):
            load_npz(bad)
    pickled = tmp_path / "obj.npz"
    np.savez(pickled, x_train=np.array([object()], dtype=object), y_train=np.zeros(1), x_test=np.zeros(1),
             y_test=np.zeros(1))
    with pytest.raises(DatasetError, match=r"is not a readable .npz file \(ValueError: Object arrays cannot be loaded"):
        load_npz(pickled)  # never unpickled: that would run code from the file


def test_commands_take_data_and_refuse_it_with_dataset(tmp_path, capsys):
    path = _save(tmp_path, **_arrays())
    parser = build_parser()
    for command in (["train"], ["quantize"], ["eval", "x.npz"], ["sim", "somedir"], ["bench"], ["explore"],
                    ["report", "accuracy"]):
        assert parser.parse_args([*command, "--data", str(path)]).data == str(path), command
    assert main(["train", "--data", str(path), "--dataset", "digits", "--preset", "tfc"]) == 2
    assert "--data and --dataset choose the data twice" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "x.csv"), "--preset", "tfc"]) == 2
    assert "--data must be a .npz file" in capsys.readouterr().err


def test_train_quantize_eval_on_user_data(tmp_path, capsys):
    """A CNN preset trained, quantized and evaluated on the user's 8x8 images of 3 classes."""
    a = _arrays(n_train=1500, n_test=60)
    a["x_train"] //= 4
    a["x_test"] //= 4
    a["x_train"][a["y_train"] == 1, :4] = 255  # learnable: class 1 is bright on top, class 2 on the left
    a["x_train"][a["y_train"] == 2, :, :4] = 255
    a["x_test"][a["y_test"] == 1, :4] = 255
    a["x_test"][a["y_test"] == 2, :, :4] = 255
    path = _save(tmp_path, **a)
    ck, ir = tmp_path / "m.pt", tmp_path / "m_ir.npz"
    assert main(["train", "--data", str(path), "--preset", "cnn_digits", "--epochs", "4", "--out", str(ck)]) == 0
    out = capsys.readouterr().out
    assert float(out.split("float32 test accuracy ")[1].split("%")[0]) > 95.0, out
    assert "mine-" in out and "1500 train / 60 test images of 8×8 uint8 pixels, 3 classes" in out
    assert main(["quantize", "--data", str(path), "--checkpoint", str(ck), "--out", str(ir)]) == 0
    out = capsys.readouterr().out
    acc = float(out.split("golden-model (integer) test accuracy ")[1].split("%")[0])
    assert acc > 90.0, out
    assert main(["eval", str(ir), "--data", str(path)]) == 0
    assert f"{acc:.2f}%" in capsys.readouterr().out


def test_a_cnn_preset_refuses_flat_rows(tmp_path, capsys):
    path = _save(tmp_path, **_arrays(shape=(64,)))
    assert main(["train", "--data", str(path), "--preset", "cnn_digits", "--epochs", "1",
                 "--out", str(tmp_path / "m.pt")]) == 2
    assert "preset 'cnn_digits' is a CNN and takes images, but data set mine-" in capsys.readouterr().err
