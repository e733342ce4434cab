"""Minifloat emulation and the fast precision search."""

import numpy as np
import pytest
import torch

from lowbit.sw.datasets import load_dataset
from lowbit.sw.quant import QuantError
from lowbit.sw.quant.minifloat import Minifloat, candidate_formats, exhaustive_search, fast_precision_search
from lowbit.sw.train import train_mlp


def test_rounding_and_range():
    f = Minifloat(4, 3)  # bias 7: normals from 2^-6; no inf/NaN codes, so max 1.875·2^8 = 480
    assert f.max == 480.0 and f.min_normal == 2.0 ** -6
    x = torch.tensor([1.0, 1.06, 1.07, -3.3, 1000.0, 2.0 ** -9, 2.0 ** -10 * 3])
    q = f.quantize(x).tolist()
    assert q[:5] == [1.0, 1.0, 1.125, -3.25, 480.0]
    assert q[5] == 2.0 ** -9  # a subnormal (step 2^-9)
    flush = Minifloat(4, 3, subnormals=False).quantize(torch.tensor([2.0 ** -9, 2.0 ** -7 * 1.1])).tolist()
    assert flush == [0.0, 2.0 ** -6]
    with pytest.raises(QuantError, match="exp_bits must be an integer in 1..8, not 9"):
        Minifloat(9, 2)
    with pytest.raises(QuantError, match="man_bits must be an integer in 0..23, not -1"):
        Minifloat(4, -1)


def test_fast_search_uses_at_most_two_evaluations():
    ds = load_dataset("digits")
    model, info = train_mlp("tfc", ds, epochs=10, seed=0, batch_size=32, progress=False)
    cands = candidate_formats(range(2, 6), range(0, 5))
    fast = fast_precision_search(model, ds.x_train[:10], ds.x_test, ds.y_test, candidates=cands,
                                 float_accuracy=info["test_accuracy"])
    ex = exhaustive_search(model, ds.x_test, ds.y_test, candidates=cands, float_accuracy=info["test_accuracy"])
    assert fast.evaluations <= 2 and ex.evaluations == len(cands)
    assert fast.chosen is not None and ex.chosen is not None
    assert fast.accuracy >= info["test_accuracy"] - 0.01
    assert ex.chosen.bits <= fast.chosen.bits
    assert set(fast.r2) == {str(c) for c in cands}
