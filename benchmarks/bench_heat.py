#!/usr/bin/env python3
"""The heat op: forward and physical gradient, 2-D (the paper's 64x64 at B = 128) and 3-D, every boundary.

    PYTHONPATH=python /usr/bin/python3 benchmarks/bench_heat.py [--quick] [--out results.json]

Cases, float32 input as in the paper's training (the op computes in float64),
nu_t = 8 on unit cells:

* 64x64 at B = 128 with periodic (the paper's), Dirichlet and Neumann
  boundaries: the forward, the physical gradient alone (the registered backward
  op, the stable probabilistic inverse) and forward + backward through
  autograd; the periodic forward also beside torch.fft's rfft2 / irfft2 of the
  same kernel (benchmarks/references.py), alternating within each repetition;
* 3-D: 32^3 at B = 16 and 128^3 at B = 1, each boundary, the same three timings;

on one thread and on torch's default thread count.  Wall time and this
process's CPU time (medians over repetitions); this is a benchmark, not a test.
"""
import argparse
import datetime
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(os.path.dirname(HERE), "python"))  # physgrad of this checkout (after `make build`)
import physgrad  # noqa: E402
import references  # noqa: E402
from bench_poisson_spectral import compare  # noqa: E402

NU_T = 8.0


def cases(quick):
    if quick:
        return [((64, 64), 8, "periodic"), ((16, 16, 16), 2, "dirichlet")]
    return ([((64, 64), 128, b) for b in ("periodic", "dirichlet", "neumann")] +
            [((32, 32, 32), 16, b) for b in ("periodic", "dirichlet", "neumann")] +
            [((128, 128, 128), 1, b) for b in ("periodic", "dirichlet", "neumann")])


def measure(shape, batch, boundary, threads, repetitions):
    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch, *shape, generator=generator)
    g = torch.randn(batch, *shape, generator=generator)
    with torch.no_grad():
        y = physgrad.heat(x, nu_t=NU_T, boundary=boundary)
    spacing = [1.0]

    def forward():
        with torch.no_grad():
            physgrad.heat(x, nu_t=NU_T, boundary=boundary)

    def physical():
        torch.ops.physgrad.heat_backward(g, x, y, NU_T, "physical", 1.0, spacing, 32, "raise", boundary)

    def forward_backward():
        leaf = x.clone().requires_grad_()
        physgrad.heat(leaf, nu_t=NU_T, boundary=boundary, grad_mode="physical").backward(g)

    variants = {"forward": forward, "physical": physical, "forward_backward": forward_backward}
    if len(shape) == 2 and boundary == "periodic":
        kernel = references.heat_kernel(shape, NU_T, dtype=torch.float32)

        def torch_fft():
            with torch.no_grad():
                references.heat(x, kernel)

        variants["torch_fft_forward"] = torch_fft
    result = compare(variants, repetitions)
    row = {"grid": "x".join(map(str, shape)), "batch": batch, "boundary": boundary, "threads": threads}
    for name, timing in result.items():
        row[name + "_ms"], row[name + "_cpu_ms"] = timing["wall_ms"], timing["cpu_ms"]
    if "torch_fft_forward" in result:
        row["torch_fft_over_op_forward"] = result["torch_fft_forward"]["ratio_to_forward"]
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repetitions (a smoke run)")
    parser.add_argument("--repetitions", type=int, default=None, help="repetitions per case (default 21, quick 3)")
    parser.add_argument("--out", help="write the results as JSON to this file")
    args = parser.parse_args()
    repetitions = args.repetitions or (3 if args.quick else 21)
    default_threads = torch.get_num_threads()
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "load_average": os.getloadavg(), "nproc": os.cpu_count(), "torch_default_threads": default_threads,
              "torch": torch.__version__, "rows": []}
    for threads in sorted({1, default_threads}):
        for shape, batch, boundary in cases(args.quick):
            report["rows"].append(measure(shape, batch, boundary, threads, repetitions))
    report["load_average_after"] = os.getloadavg()
    print(f"{'grid':>12} {'B':>4} {'boundary':>9} {'thr':>3} {'forward ms (cpu)':>17} {'physical ms (cpu)':>18} "
          f"{'fwd+bwd ms (cpu)':>17} {'torch.fft fwd':>14}")
    for r in report["rows"]:
        fft = f"{r['torch_fft_forward_ms']:8.2f}" if "torch_fft_forward_ms" in r else ""
        print(f"{r['grid']:>12} {r['batch']:>4} {r['boundary']:>9} {r['threads']:>3} {r['forward_ms']:8.2f} "
              f"({r['forward_cpu_ms']:6.2f}) {r['physical_ms']:8.2f} ({r['physical_cpu_ms']:6.2f}) "
              f"{r['forward_backward_ms']:8.2f} ({r['forward_backward_cpu_ms']:6.2f}) {fft:>14}")
    print(f"\nload average before {report['load_average']}, after {report['load_average_after']}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()
