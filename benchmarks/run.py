"""eyefast benchmark runner: one table of eyefast vs the alternatives, measured in one run.

    python -m benchmarks.run [--device cpu|cuda] [--quick] [--only OP[,OP]] [--json PATH] [--plot PNG]

Columns: op, n, eyefast ms, reference ms, speed-up (reference / eyefast), GB/s (the op's minimal
bytes over its time), copy GB/s (a torch copy moving as many bytes, same run: the bandwidth
ceiling), and the fraction of that ceiling. On a GPU, cases that have a nerfacc counterpart add
nerfacc ms. Cases are collected from every ``benchmarks/cases_*.py`` module (``cases(device,
quick) -> list[Case]``).
"""

from __future__ import annotations

import argparse
import glob
import importlib
import json
import os
import platform
import sys

import torch

from .common import copy_gbps, device_name, time_fn


def collect(device: str, quick: bool, only: set[str] | None):
    here = os.path.dirname(os.path.abspath(__file__))
    out = []
    for path in sorted(glob.glob(os.path.join(here, "cases_*.py"))):
        mod = importlib.import_module(f"benchmarks.{os.path.basename(path)[:-3]}")
        for case in mod.cases(device, quick):
            # --only OP also selects OP's variants named OP+suffix (e.g. trace_eyes+bwd).
            if only is None or case.op in only or case.op.split("+")[0] in only:
                out.append(case)
    return out


def run(device: str, quick: bool, only: set[str] | None, skip_reference: bool = False):
    records = []
    for case in collect(device, quick, only):
        ms = time_fn(case.eyefast, device, setup=case.eyefast_setup)
        ref_ms = None
        if case.reference is not None and not skip_reference:
            ref_ms = time_fn(case.reference, device, min_time=0.0, max_reps=3, warmup=1,
                             setup=case.reference_setup) * case.reference_scale
        ceiling = copy_gbps(case.bytes_moved, device) if case.bytes_moved else None
        rec = {
            "op": case.op,
            "device": device,
            "device_name": device_name(device),
            "n": case.n,
            "eyefast_ms": ms,
            "reference_ms": ref_ms,
            "speedup": (ref_ms / ms) if ref_ms else None,
            "gbps": (case.bytes_moved / (ms * 1e-3) / 1e9) if case.bytes_moved else None,
            "copy_gbps": ceiling,
            "note": case.note,
        }
        rec.update(case.info)
        for name, fn in case.extra.items():
            other = time_fn(fn, device)
            rec[f"{name}_ms"] = other
            rec[f"speedup_vs_{name}"] = other / ms
        records.append(rec)
        print_row(rec)
    return records


HEADER = f"{'op':<28}{'n':>10}{'eyefast ms':>12}{'ref ms':>11}{'speed-up':>10}{'GB/s':>9}{'copy GB/s':>11}{'of copy':>9}"


def print_row(r):
    ref = f"{r['reference_ms']:.2f}" if r["reference_ms"] else "-"
    sp = f"{r['speedup']:.1f}x" if r["speedup"] else "-"
    extra = "".join(f"  {k}={v:.3f}" for k, v in r.items() if k.endswith("_ms") and k not in ("eyefast_ms", "reference_ms"))
    bw = (f"{r['gbps']:>9.1f}{r['copy_gbps']:>11.1f}{r['gbps'] / r['copy_gbps']:>8.0%}" if r["gbps"]
          else f"{'-':>9}{'-':>11}{'-':>8}")  # data-dependent output (sampling): no byte count
    flags = "".join(f"  {k}={r[k]}" for k in ("identical_samples",) if k in r)
    print(f"{r['op']:<28}{r['n']:>10}{r['eyefast_ms']:>12.3f}{ref:>11}{sp:>10}{bw}{extra}{flags}", flush=True)


def plot(records, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return
    ops_ = [r["op"] for r in records]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.5 + 0.5 * len(ops_)))
    axes[0].barh(ops_, [r["speedup"] or 0 for r in records], color="tab:blue")
    axes[0].set_xlabel("speed-up vs reference (x)")
    axes[0].set_xscale("log")
    axes[1].barh(ops_, [(r["gbps"] / r["copy_gbps"]) if r["gbps"] else 0 for r in records], color="tab:green")
    axes[1].axvline(1.0, color="k", lw=0.5)
    axes[1].set_xlabel("fraction of copy bandwidth")
    axes[1].set_yticklabels([])
    fig.suptitle(f"eyefast on {records[0]['device_name']}" if records else "eyefast")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (finishes in under 30 s on 2 cores)")
    ap.add_argument("--only", default=None, help="comma-separated op names")
    ap.add_argument("--json", default=None, help="write the records to this JSON file")
    ap.add_argument("--plot", default=None, help="draw speed-ups and bandwidth fractions to this PNG")
    ap.add_argument("--no-reference", action="store_true", help="skip the (slow) reference timings")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda but no CUDA device is available")
    only = set(args.only.split(",")) if args.only else None
    print(f"eyefast benchmarks on {device_name(args.device)} (torch {torch.__version__})")
    print(HEADER)
    records = run(args.device, args.quick, only, args.no_reference)
    if not records:
        print("no benchmark case matched", file=sys.stderr)
        return 2
    if args.json:
        meta = {
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "python": platform.python_version(),
            "device_name": device_name(args.device),
        }
        try:
            import nerfacc

            meta["nerfacc"] = nerfacc.__version__
        except Exception:  # noqa: BLE001 - optional
            meta["nerfacc"] = None
        for r in records:
            r.update({k: v for k, v in meta.items() if k not in r})
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(records, fh, indent=2)
        print(f"records written to {args.json}")
    if args.plot:
        plot(records, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
