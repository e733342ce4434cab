"""Command-line conventions: every subcommand that writes a folder takes -o/--output."""

import json
from pathlib import Path

import pytest

from lowbit.sw.cli import build_parser, main

# subcommand → the arguments it needs besides the output folder
WRITES_A_FOLDER = {
    "gen": ["mac"], "build": [], "synth": ["some/dir"], "sim": ["some/build"], "explore": [],
    "report": ["accuracy"], "bench": [], "demo": [],
}
OLD_SPELLINGS = {"explore": "--out", "report": "--out"}


@pytest.mark.parametrize("command", sorted(WRITES_A_FOLDER))
def test_every_folder_writer_takes_o_and_output(command):
    parser = build_parser()
    rest = WRITES_A_FOLDER[command]
    spellings = ["-o", "--output"] + ([OLD_SPELLINGS[command]] if command in OLD_SPELLINGS else [])
    for flag in spellings:
        args = parser.parse_args([command, *rest, flag, "build/somewhere"])
        assert args.output == "build/somewhere", flag


def test_the_old_spellings_still_parse_and_errors_name_the_one_typed(capsys):
    assert main(["explore", "--out", "sw/inside"]) == 2
    assert "--out must not be inside the source tree" in capsys.readouterr().err
    assert main(["explore", "-o", "sw/inside"]) == 2
    assert "--output must not be inside the source tree" in capsys.readouterr().err
    assert main(["report", "accuracy", "--output", "hw"]) == 2
    assert "--output must not be inside the source tree" in capsys.readouterr().err
    assert main(["synth", "build/x", "-o", "tests/x"]) == 2
    assert "--output must not be inside the source tree" in capsys.readouterr().err


def test_synth_writes_its_report_into_output_not_dir(tmp_path, capsys):
    src, out = tmp_path / "gen", tmp_path / "reports"
    assert main(["gen", "mac-requant", "--pe", "2", "--simd", "2", "--weight", "s2", "--act", "u2",
                 "--out", "u2", "--relu", "-o", str(src)]) == 0
    before = sorted(p.name for p in src.iterdir())
    assert main(["synth", str(src), "--target", "xilinx-7", "-o", str(out)]) == 0
    assert sorted(p.name for p in src.iterdir()) == before  # DIR only read
    report = json.loads((out / "synth_xilinx-7.json").read_text())
    assert report["top"] == "mac_requant" and report["resources"]["lut"] > 0
    assert f"wrote {out / 'synth_xilinx-7.json'}" in capsys.readouterr().out


def test_sim_runs_in_the_output_folder(tmp_path, monkeypatch):
    import lowbit.sim.netrun as netrun

    build = tmp_path / "net"
    assert main(["build", "--random", "64,8,4", "--fold", "4x8,2x4", "--no-sim-model", "-o", str(build)]) == 0
    seen = {}

    class Stop(Exception):
        pass

    def fake(build_dir, manifest, net, px, labels, **kw):
        seen.update(build_dir=build_dir, **kw)
        raise Stop

    monkeypatch.setattr(netrun, "simulate_build", fake)
    with pytest.raises(Stop):
        main(["sim", str(build), "--dataset", "digits", "--images", "3", "--model", "synthesis",
              "-o", str(tmp_path / "simdir")])
    assert seen["sim_dir"] == (tmp_path / "simdir").resolve() and seen["build_dir"] == build.resolve()
    with pytest.raises(Stop):
        main(["sim", str(build), "--dataset", "digits", "--images", "3", "--model", "synthesis"])
    assert seen["sim_dir"] is None  # simulate_build's default: beside the build
    assert Path(seen["build_dir"]) == build.resolve()


def test_an_os_error_is_reported_without_a_traceback(tmp_path, monkeypatch, capsys):
    import errno

    import lowbit.hw.build as hb
    from lowbit.sw.cli import main

    def full(target, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(target))
    monkeypatch.setattr(hb, "replace_folder", full)
    assert main(["build", "--random", "12,8,4", "--fold", "4x3,2x4", "--no-sim-model", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"lowbit build: error: No space left on device ({tmp_path / 'o'})" in err and "Traceback" not in err
