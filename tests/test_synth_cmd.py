"""``lowbit synth`` on a ``lowbit gen`` folder: JSON report, table, fit errors, bad input."""

import json

import pytest

from lowbit.sw import synth as synth_mod
from lowbit.sw.cli import main
from lowbit.sw.synth import TARGETS, FitError, Target, check_fit, fit_violations, io_wrapper, load_design


def _gen(folder, *extra):
    assert main(["gen", "mac-requant", "--pe", "2", "--simd", "2", "--weight", "s2", "--act", "u2",
                 "--out", "u2", "--relu", "-o", str(folder), *extra]) == 0


def test_fit_message_names_resource_and_overshoot():
    res = {"lut": 6120, "ff": 10, "bram": 3, "dsp": 9}
    v = fit_violations(res, TARGETS["ice40-up5k"])
    assert v == ["needs 6120 LUT4 but ice40-up5k has 5280 (116%)", "needs 9 SB_MAC16 but ice40-up5k has 8 (112%)"]
    with pytest.raises(FitError, match=r"needs 6120 LUT4 but ice40-up5k has 5280 \(116%\)"):
        check_fit(res, TARGETS["ice40-up5k"])
    assert fit_violations({"lut": 5280, "dsp": 0}, TARGETS["ice40-up5k"]) == []
    assert fit_violations({"dsp": 1}, TARGETS["ice40-hx8k"]) == ["needs 1 DSP but ice40-hx8k has 0"]


def test_load_design_block_and_network(tmp_path):
    (tmp_path / "blk").mkdir()
    (tmp_path / "blk" / "a.v").write_text("module a(input clk); endmodule\n")
    (tmp_path / "blk" / "a.json").write_text(json.dumps({"top": "a"}))
    d = load_design(tmp_path / "blk")
    assert d["top"] == "a" and d["kind"] == "block" and d["verilog"] == [tmp_path / "blk" / "a.v"]
    net = tmp_path / "net"
    net.mkdir()
    (net / "x.v").write_text("module net_top(input clk); endmodule\n")
    (net / "manifest.json").write_text(json.dumps({"top": "net_top", "verilog": ["x.v"]}))
    (net / "other.json").write_text(json.dumps({"top": "ignored"}))
    d = load_design(net)
    assert d["top"] == "net_top" and d["kind"] == "network"
    (net / "manifest.json").write_text(json.dumps({"top": "net_top", "verilog": ["missing.v"]}))
    with pytest.raises(FileNotFoundError, match="missing.v"):
        load_design(net)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="DIR must hold manifest.json or exactly one"):
        load_design(tmp_path / "empty")


def test_io_wrapper_connects_every_port():
    ports = {"clk": ("input", 1), "rst": ("input", 1), "a": ("input", 5), "y": ("output", 3)}
    v = io_wrapper("core", ports)
    assert "core core (.clk(clk), .rst(ish[0:0]), .a(ish[5:1]), .y(outs[2:0]));" in v
    assert "reg [5:0] ish;" in v and "reg [2:0] osh;" in v


def test_unknown_target_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["synth", str(tmp_path), "--target", "ice40-up9k"])
    assert "invalid choice: 'ice40-up9k'" in capsys.readouterr().err


@pytest.mark.hdl
def test_cli_on_a_gen_folder_reports_and_refuses_when_it_does_not_fit(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "blk"
    _gen(folder)
    capsys.readouterr()
    assert main(["synth", str(folder), "--target", "xilinx-7"]) == 0
    out = capsys.readouterr().out
    report = json.loads((folder / "synth_xilinx-7.json").read_text())
    assert report["top"] == "mac_requant" and report["kind"] == "block" and report["fits"]
    assert report["fmax_mhz"] is None and any("fmax not reported" in n for n in report["notes"])
    r = report["resources"]
    assert r["lut"] > 0 and r["ff"] >= 2 and r["dsp"] == 0
    assert f"LUTs (LUT6)" in out and str(r["lut"]) in out and "fits            yes" in out

    # a target with a tiny LUT budget: the error names the resource and the overshoot
    tiny = Target("xilinx-7", "xilinx", {"lut": (10, "LUT6"), "ff": (41600, "FF"), "bram": (100, "RAMB18"),
                                         "dsp": (90, "DSP48E1")}, io=210)
    monkeypatch.setitem(synth_mod.TARGETS, "xilinx-7", tiny)
    assert main(["synth", str(folder), "--target", "xilinx-7"]) == 2
    err = capsys.readouterr().err
    pct = round(100 * r["lut"] / 10)
    assert f"needs {r['lut']} LUT6 but xilinx-7 has 10 ({pct}%)" in err
    assert json.loads((folder / "synth_xilinx-7.json").read_text())["fits"] is False


def test_pnr_timeout_is_checked_before_any_work(capsys):
    from lowbit.sw.cli import main

    assert main(["synth", "build/nothing-here", "--pnr-timeout", "0"]) == 2
    assert "--pnr-timeout must be a positive number of seconds, not 0.0" in capsys.readouterr().err
