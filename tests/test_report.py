"""lowbit report accuracy: rows cached one by one, an interrupted run resumes, keys and options."""

import json

import pytest

import lowbit.sw.quant as quant
from lowbit.sw.cli import main
from lowbit.sw.commands.report import RowCache, parse_input_bits, row_key

ARGS = ["report", "accuracy", "--dataset", "digits", "--presets", "tfc", "--bits", "2,4", "--methods", "pow2",
        "--qat-epochs", "1", "--wage-epochs", "0", "--no-minifloat", "--epochs", "2", "--calib", "200",
        "--seeds", "1"]
ROWS = 4  # pow2 W2A2 and W4A4, post-training and QAT
REAL_QUANTIZE = quant.quantize


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the float checkpoint goes to build/models under the working folder
    return tmp_path


def counting_quantize(monkeypatch, fail_at=None):
    calls = []
    real = REAL_QUANTIZE

    def quantize(*args, **kw):
        calls.append((args[1:4], kw.get("qat")))
        if fail_at is not None and len(calls) >= fail_at:
            raise ValueError("interrupted")
        return real(*args, **kw)

    monkeypatch.setattr(quant, "quantize", quantize)
    return calls


def table(out):
    return (out / "accuracy.md").read_text()


def test_second_run_reads_every_row_from_the_cache(workdir, monkeypatch, capsys):
    out = workdir / "rep"
    assert main(ARGS + ["-o", str(out)]) == 0
    first = table(out)
    assert len(list((out / "cache").glob("*.json"))) == ROWS
    assert "| tfc | pow2 | W4 A4 in8 | 4 | qat |" in first and "(1 epoch)" in first
    capsys.readouterr()

    def broken(*args, **kw):
        raise AssertionError("a cached row was recomputed")

    monkeypatch.setattr(quant, "quantize", broken)
    assert main(ARGS + ["-o", str(out)]) == 0
    assert f"0 rows computed, {ROWS} from" in capsys.readouterr().out
    assert table(out) == first  # the same numbers, and the compute times of the first run


def test_interrupted_run_resumes(workdir, monkeypatch, capsys):
    out = workdir / "rep"
    calls = counting_quantize(monkeypatch, fail_at=3)
    assert main(ARGS + ["-o", str(out)]) == 2  # the third row fails, as an interruption would
    assert "interrupted" in capsys.readouterr().err
    assert len(list((out / "cache").glob("*.json"))) == 2 and not (out / "accuracy.md").exists()
    calls = counting_quantize(monkeypatch)
    assert main(ARGS + ["-o", str(out)]) == 0
    assert [qat for _, qat in calls] == [True, True]  # only the two rows the first run did not finish
    assert "2 rows computed, 2 from" in capsys.readouterr().out
    fresh = workdir / "fresh"
    assert main(ARGS + ["-o", str(fresh)]) == 0
    strip = lambda md: [l.rsplit("|", 2)[0] for l in md.splitlines()]  # all but the seconds column
    assert strip(table(out)) == strip(table(fresh))


def test_changed_options_and_no_cache_recompute(workdir, monkeypatch):
    out = workdir / "rep"
    assert main(ARGS + ["-o", str(out)]) == 0
    calls = counting_quantize(monkeypatch)
    assert main(ARGS + ["--qat-epochs", "2", "-o", str(out)]) == 0
    assert [qat for _, qat in calls] == [True, True]  # post-training rows do not depend on QAT epochs
    calls.clear()
    assert main(ARGS + ["--calib", "150", "-o", str(out)]) == 0
    assert len(calls) == ROWS
    calls.clear()
    assert main(ARGS + ["--no-cache", "-o", str(out)]) == 0
    assert len(calls) == ROWS


def test_unreadable_or_foreign_cache_entries_are_misses(tmp_path):
    cache = RowCache(tmp_path)
    key = row_key(preset="tfc", method="pow2", options={"cluster": 4})
    assert cache.get(key) is None
    cache.put(key, {"accuracy": 0.5})
    assert cache.get(key) == {"accuracy": 0.5}
    assert cache.get(row_key(preset="tfc", method="pow2", options={"cluster": 16})) is None
    path = cache.path(key)
    path.write_text("{not json")
    assert cache.get(key) is None
    path.write_text(json.dumps({"key": {"other": 1}, "value": {"accuracy": 0.9}}))
    assert cache.get(key) is None  # the stored key must be the one asked for
    assert RowCache(tmp_path, read=False).get(key) is None


def test_input_bits_rows_are_marked(workdir):
    out = workdir / "rep"
    args = [a for a in ARGS if a not in ("pow2",)]
    args[args.index("--methods") + 1:args.index("--methods") + 1] = ["pow2,binary"]
    assert main(args + ["--bits", "1,2", "--qat-epochs", "0", "--input-bits", "binary=8", "-o", str(out)]) == 0
    md = table(out)
    assert "rows marked `inN` set it with --input-bits (binary 8)" in md
    rows = {l.split(" | ")[2]: l.split(" | ") for l in md.splitlines() if l.startswith("| tfc | ")}
    assert rows["W1 A1 in8"][8] == "8" and rows["W1 A2 in8"][8] == "8"
    assert rows["W2 A2"][8] == "2"  # pow2 keeps the default, min(A, 8)


@pytest.mark.parametrize("text,message", [
    ("9", "input_bits for method 'pow2' must be an integer in 1..8, not 9"),
    ("binary=x", "--input-bits entries must be N or METHOD=N with N an integer in 1..8, not 'binary=x'"),
    ("wage=8", "--input-bits entries must be N or METHOD=N with METHOD among pow2, scaled, dfp, ternary, binary, "
               "not 'wage=8'"),
])
def test_bad_input_bits(text, message, workdir, capsys):
    assert main(ARGS + ["--input-bits", text, "-o", str(workdir / "rep")]) == 2
    assert message in capsys.readouterr().err
    assert not (workdir / "build").exists()  # refused before any training


def test_parse_input_bits():
    assert parse_input_bits("", ["pow2"]) == {} and parse_input_bits("auto", ["pow2"]) == {}
    assert parse_input_bits("8", ["pow2", "binary"]) == {"pow2": 8, "binary": 8}
    assert parse_input_bits("binary=8, pow2=4", ["pow2", "binary"]) == {"binary": 8, "pow2": 4}


def test_code_version_ignores_comments_and_docstrings():
    from lowbit.sw.commands.report import _code_tree, code_version

    doc = _code_tree(b'"""Module."""\ndef f(x):\n    """Doc."""\n    return x + 1  # why\n')
    assert doc == _code_tree(b"def f(x):\n    return x + 1\n")
    assert doc != _code_tree(b"def f(x):\n    return x + 2\n")
    assert code_version() == code_version() and len(code_version()) == 20


def test_seeds_repeat_the_best_w2a2_and_w1a1_qat_rows(workdir, monkeypatch):
    out = workdir / "rep"
    args = [a for a in ARGS if a not in ("pow2",)]
    args[args.index("--methods") + 1:args.index("--methods") + 1] = ["pow2,binary"]
    args[args.index("--seeds") + 1] = "3"
    calls = counting_quantize(monkeypatch)
    seeds = []
    real = quant.quantize
    monkeypatch.setattr(quant, "quantize", lambda *a, **kw: seeds.append((a[1], a[3], kw["seed"])) or real(*a, **kw))
    assert main(args + ["--bits", "1,2", "-o", str(out)]) == 0
    md = table(out)
    # binary at 1 bit is W1A1 (bipolar); pow2 W2A2 and binary W1A2 are not W1A1, so W2A2's best QAT row is pow2's
    for config in ("W2 A2 in8 qat seed 1", "W2 A2 in8 qat seed 2", "W1 A1 in8 qat seed 1", "W1 A1 in8 qat seed 2"):
        assert f"| {config} | " in md
    assert sorted(s for m, b, s in seeds if (m, b) == ("pow2", 2)) == [0, 0, 1, 2]  # PTQ, QAT, 2 more seeds
    assert len(list((out / "cache").glob("*.json"))) == len(calls)  # every seed is a row of its own
    assert "the best method per width" not in md  # digits: no peer figures to compare with


def test_summary_against_the_peer_uses_the_mean_of_the_seeds():
    from argparse import Namespace

    from lowbit.sw.commands.report import PEER, TARGETS, _summary

    by_width = {("sfc", 8): [{"method": "pow2", "config": "W8 A8 in8", "mode": "ptq", "accuracy": 0.903},
                             {"method": "scaled", "config": "W8 A8 in8", "mode": "ptq", "accuracy": 0.905}],
                ("sfc", 2): [{"method": "scaled", "config": "W2 A2 in8", "mode": "ptq", "accuracy": 0.95},
                             {"method": "scaled", "config": "W2 A2 in8", "mode": "qat", "accuracy": 0.890,
                              "seeds": [0.890, 0.886, 0.888]}]}
    lines = _summary("sfc", "fashion-mnist", 0.901, by_width, Namespace(qat_epochs=3, learn_scales=True, seeds=3))
    rows = {l.split(" | ")[0]: l for l in lines if l.startswith("| ")}
    assert rows["| float32"] == f"| float32 | {PEER['sfc'][32]:.2f} | {TARGETS['sfc'][32]:.2f} | 90.10 | no | float32 | - | 1 |"
    assert rows["| W8A8"] == "| W8A8 | 90.05 | 90.20 | 90.50 | yes | scaled W8 A8 in8 | ptq | 1 |"
    # the seeded row, not the (higher) single post-training one, and the mean of its seeds
    assert rows["| W2A2"] == "| W2A2 | 88.65 | 88.90 | 88.80 (88.60–89.00) | no | scaled W2 A2 in8 | qat | 3 |"
    assert _summary("sfc", "digits", 0.9, by_width, Namespace(qat_epochs=3, learn_scales=True, seeds=3)) == []
