#!/usr/bin/env python3
"""Speed and memory of the physgrad ops and training steps, against plain PyTorch.

    PYTHONPATH=python /usr/bin/python3 benchmarks/bench_ops.py --out benchmarks/results
    (make bench; --quick: tiny sizes, a smoke run of a few seconds)

One process times every case (medians of repeated runs after warm-up; the
load average is recorded with each case, since shared machines are noisy):

* each op's forward (no autograd) and, per gradient mode, forward with
  autograd + backward, at batch 1 and at the paper's batch: Poisson 80x60 and
  64x64 (B = 64, 128), heat 64x64 (B = 128), fluid 64x64 8 steps (B = 64),
  sine (B = 1000), wave packet (B = 100).  ``lbfgs`` runs sample by sample
  (its cost is proportional to B), so Poisson's and the fluid's are measured
  at a capped batch (noted in the table);
* the references of ``benchmarks/references.py`` (batched CG with a conv2d
  stencil, torch.fft, a torch MacCormack + CG fluid, closed forms), with their
  agreement with the op printed and recorded;
* the FFTW floor of the heat op (``build/bench_heat_fftw``: the transforms alone);
* PETSc preconditioners: Poisson's (cholesky, icc, none, jacobi, gamg, hypre) at the paper's
  sizes and tolerances, and the fluid's pressure solve (icc, cholesky, none);
* 1 versus 2 threads (``torch.set_num_threads``, which physgrad follows);
* one training step per experiment (network forward, op, loss, backward, Adam
  step) for ``adam`` and ``adam+pg``, split into network and physics time;
* peak memory of each case: a subprocess per case runs it once to warm up,
  resets the peak (``/proc/self/clear_refs``), runs it again and reports
  ``VmHWM`` minus the resident size before the call.

Writes ``<out>/bench_ops.json`` and ``<out>/bench_ops.md`` (see bench_report.py).

This file is the program; the cases are in bench_cases.py, how they are timed
and their memory measured in bench_timing.py, the FFTW floor, preconditioners
and machine description in bench_extras.py, the plain-PyTorch references in
references.py.
"""
import argparse
import dataclasses
import datetime
import json
import os
import re
import sys
from typing import Dict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(ROOT, "python"))  # physgrad of this checkout (after `make build`)

import bench_report  # noqa: E402
from bench_cases import all_cases, make_config  # noqa: E402
from bench_extras import machine_info, run_fftw_floor, run_preconditioners  # noqa: E402
from bench_timing import memory_in_subprocess, memory_of_case, run_case  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few repeats (smoke run)")
    parser.add_argument("--only", default="", help="regular expression: run only matching case ids")
    parser.add_argument("--memory", choices=("all", "some", "none"), default=None,
                        help="peak-memory subprocesses: all cases, a few (default with --quick), or none")
    parser.add_argument("--no-threads", action="store_true", help="skip the 1- vs 2-thread sweep")
    parser.add_argument("--no-extras", action="store_true", help="skip the FFTW floor and the preconditioners")
    parser.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    parser.add_argument("--memory-case", help=argparse.SUPPRESS)
    parser.add_argument("--memory-part", help=argparse.SUPPRESS)
    parser.add_argument("--memory-into", metavar="JSON",
                        help="only measure the peak memory of the cases of an earlier report (its config: pass "
                             "--quick for a quick one) and rewrite it and its Markdown")
    args = parser.parse_args(argv)
    cfg = make_config(args.quick)
    agreement: Dict = {}

    if args.memory_case:
        cases = {c.id: c for c in all_cases(cfg, None)}
        print(json.dumps(memory_of_case(cases[args.memory_case], args.memory_part)))
        return 0

    if args.memory_into:
        with open(args.memory_into) as f:
            report = json.load(f)
        by_id = {c.id: c for c in all_cases(cfg, None)}
        for result in report["results"]:
            if result["id"] in by_id and (not args.only or re.search(args.only, result["id"])):
                result["memory"] = memory_in_subprocess(by_id[result["id"]], args.quick)
                print(f"memory {result['id']}: {result['memory']}", flush=True)
        report["memory_measured"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        with open(args.memory_into, "w") as f:
            json.dump(report, f, indent=1, default=str)
        with open(os.path.splitext(args.memory_into)[0] + ".md", "w") as f:
            f.write(bench_report.markdown(report))
        return 0

    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = os.getloadavg()
    cases = [c for c in all_cases(cfg, agreement) if not args.only or re.search(args.only, c.id)]
    for key, row in agreement.items():
        ok = row["relative_difference"] <= row["threshold"] and row.get("gradient_relative_difference", 0.0) <= \
            10 * row["threshold"]
        row["ok"] = bool(ok)
        print(f"agreement {key}: relative difference {row['relative_difference']:.2e}"
              + (f", gradient {row['gradient_relative_difference']:.2e}" if "gradient_relative_difference" in row
                 else "") + f" (threshold {row['threshold']:.0e}) {'ok' if ok else 'NOT OK'}", flush=True)

    results = []
    for case in cases:
        result = run_case(case, cfg, threads=1)
        results.append(result)
        print(bench_report.one_line(result), flush=True)
    sweep = []
    if not args.no_threads:
        for case in (c for c in cases if c.sweep and (c.impl == "physgrad" or not args.quick)):
            for threads in cfg.threads:
                sweep.append(run_case(case, cfg, threads))
                print("threads", bench_report.one_line(sweep[-1]), flush=True)
    extras = {}
    if not args.no_extras and not args.only:
        extras["fftw_floor"] = run_fftw_floor(args.build_dir, cfg, args.quick)
        extras["preconditioners"] = run_preconditioners(cfg)
    memory_mode = args.memory or ("some" if args.quick else "all")
    if memory_mode != "none":
        chosen = cases if memory_mode == "all" else [c for c in cases if c.impl == "physgrad"][:1]
        by_id = {r["id"]: r for r in results}
        for case in chosen:
            by_id[case.id]["memory"] = memory_in_subprocess(case, args.quick)
            print(f"memory {case.id}: {by_id[case.id]['memory']}", flush=True)

    report = {"started": started.isoformat(timespec="seconds"),
              "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join([os.path.relpath(sys.argv[0], ROOT)] + (argv if argv is not None else sys.argv[1:])),
              "quick": args.quick, "machine": machine_info(),
              "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
              "config": dataclasses.asdict(cfg), "agreement": agreement, "results": results, "threads": sweep,
              **extras}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_ops.json"), "w") as f:
        json.dump(report, f, indent=1, default=str)
    with open(os.path.join(args.out, "bench_ops.md"), "w") as f:
        f.write(bench_report.markdown(report))
    print(f"wrote {os.path.join(args.out, 'bench_ops.json')} and bench_ops.md")
    return 0 if all(row["ok"] for row in agreement.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
