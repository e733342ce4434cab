"""Place and route with yowasp-nextpnr (iCE40, ECP5) for an fmax estimate.

No pin constraints are given: ``--pcf-allow-unconstrained`` / ``--lpf-allow-unconstrained``
let nextpnr place the IO itself, which is all a timing estimate needs. The clock comes from
``--freq`` (nextpnr then times every clock domain against it; ``--timing-allow-fail``
because missing it is a result to report, not an error); the achieved frequency is
read from the last ``Max frequency for clock`` lines (the post-route ones).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .util import ToolRunError

__all__ = ["nextpnr", "parse_fmax", "DEFAULT_FREQ_MHZ"]

DEFAULT_FREQ_MHZ = {"ice40": 50.0, "ecp5": 150.0}

_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+)\s+MHz\s+\((PASS|FAIL)\s+at\s+([\d.]+)\s+MHz\)")


def parse_fmax(log: str) -> dict:
    """``{clock: (fmax MHz, passed, constraint MHz)}`` from the last report in a nextpnr log.

    nextpnr reports fmax after placement and again after routing; the later lines win.
    """
    out = {}
    for clk, f, verdict, target in _FMAX.findall(log):
        out[clk] = (float(f), verdict == "PASS", float(target))
    return out


def _binary(family: str) -> str:
    exe = Path(sys.executable).parent / f"yowasp-nextpnr-{family}"
    if not exe.is_file():
        raise RuntimeError(f"yowasp-nextpnr-{family} is not installed in this environment: run 'make install'")
    return str(exe)


def nextpnr(netlist: str | Path, target, *, freq_mhz: float | None = None, seed: int = 1,
            timeout_s: float = 1800) -> dict:
    """Place and route a yosys JSON netlist; return fmax and utilization.

    Parameters
    ----------
    netlist : path
        yosys ``write_json`` output for ``target.family``.
    target : lowbit.sw.synth.Target
        Gives the family and the device/package arguments.
    freq_mhz : float or None
        Clock constraint; ``None`` takes :data:`DEFAULT_FREQ_MHZ` of the family.

    Returns
    -------
    dict
        ``fmax_mhz`` (the slowest clock), ``clocks`` (per clock: fmax, passed, constraint),
        ``freq_mhz``, ``seconds``, ``utilization`` (nextpnr's "Device utilisation" lines) and ``log``.
    """
    if target.nextpnr is None:
        raise ValueError(f"target must have an open place-and-route flow (ice40, ecp5), not {target.name!r}")
    freq = DEFAULT_FREQ_MHZ[target.family] if freq_mhz is None else float(freq_mhz)
    if not freq > 0:
        raise ValueError(f"freq_mhz must be positive, not {freq_mhz!r}")
    unconstrained = "--pcf-allow-unconstrained" if target.family == "ice40" else "--lpf-allow-unconstrained"
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(netlist, Path(tmp) / "netlist.json")
        cmd = [_binary(target.family), *target.nextpnr, "--json", "netlist.json", "--freq", f"{freq:g}",
               unconstrained, "--timing-allow-fail", "--seed", str(seed), "--report", "report.json"]
        t0 = time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ToolRunError(f"nextpnr-{target.family} ({target.name}) did not finish within {timeout_s:g} s "
                               f"(place and route of a large design: give it longer with --pnr-timeout, or synthesize without it: --no-pnr)") from None
        seconds = time.monotonic() - t0
        log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = "\n".join(log.splitlines()[-15:])
        raise ToolRunError(f"nextpnr-{target.family} ({target.name}) failed:\n{tail}")
    clocks = parse_fmax(log)
    util = {}
    for name, used, total in re.findall(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", log):
        util[name] = (int(used), int(total))  # the last report (after routing) wins
    fmax = min((f for f, _, _ in clocks.values()), default=None)
    return {"fmax_mhz": fmax, "clocks": {k: {"fmax_mhz": f, "passed": p, "constraint_mhz": c}
                                         for k, (f, p, c) in clocks.items()},
            "freq_mhz": freq, "seconds": seconds, "utilization": util, "log": log}
