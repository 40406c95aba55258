"""Where one train step's time goes: jaxzoo's (a jax.profiler trace, per XLA op, grouped by kind)
beside torchvision's (torch.profiler, per aten op), same model, batch, resolution and threads.

    python benchmarks/profile_train_step.py resnet50 --size 128 --batch 16 [--threads 2]
    python benchmarks/profile_train_step.py resnet18 --mode infer --size 224 --batch 32

XLA:CPU reports each executed op (thunk) as a trace event named after its HLO instruction; the
instruction's fused computation says what it is (a convolution, a dot, a reduction, elementwise
work). Times are summed over the traced steps and threads and divided by the step count.
"""
import argparse
import collections
import glob
import gzip
import json
import re
import tempfile
import time

from jaxzoo import bench
from jaxzoo.host_memory import keep_freed_memory


def hlo_categories(hlo: str) -> dict[str, str]:
    """Instruction name -> kind of work, from the optimized HLO text."""
    computations, instructions, current = collections.defaultdict(list), {}, None
    for line in hlo.splitlines():
        if not line.startswith(" ") and line.rstrip().endswith("{"):
            current = "ENTRY" if line.startswith("ENTRY") else line.split()[0].lstrip("%")
        m = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = (\S+) ([\w\-]+)\((.*)", line)
        if m:
            name, _, op, rest = m.groups()  # name, shape, opcode, operands and attributes
            computations[current].append((op, rest))
            instructions.setdefault(name, (op, rest))

    def kind(op, rest):
        if op == "fusion":
            called = re.search(r"calls=%?([\w.\-]+)", rest)
            inner = computations.get(called.group(1), []) if called else []
            ops = {o for o, _ in inner}
            convs = [r for o, r in inner if o == "convolution"]
            if convs:
                # XLA writes a kernel gradient as a convolution whose window is the feature map
                # (larger than any kernel of the zoo, 7) or, for strided convs, a dilated one.
                window = re.search(r"window=\{size=([\dx]+)", convs[0])
                sizes = [int(n) for n in window.group(1).split("x")] if window else []
                grad = "rhs_dilate" in convs[0] or max(sizes, default=0) > 7
                return "conv, kernel gradient" if grad else "conv, forward or input gradient"
            if "dot" in ops:
                return "matmul (1x1 and small-map convs as im2col, fc)"
            if ops & {"reduce-window", "select-and-scatter"}:
                return "max pool"
            if "reduce" in ops:
                return "reductions (BatchNorm statistics, loss)"
            if ops <= {"copy", "transpose", "bitcast", "parameter"}:
                return "layout copies"
            return "elementwise (BatchNorm apply and backward, ReLU, add, Adam)"
        return {"convolution": "conv, forward or input gradient",
                "dot": "matmul (1x1 and small-map convs as im2col, fc)",
                "copy": "layout copies", "transpose": "layout copies"}.get(op, op)

    return {name: kind(op, rest) for name, (op, rest) in instructions.items()}


def profile_jax(name, mode, size, batch, steps):
    import jax

    runner = bench.JaxRunner(name, mode, batch, size, "float32")
    categories = hlo_categories(runner.compiled.as_text())
    for _ in range(2):
        runner.step()
    with tempfile.TemporaryDirectory() as logdir:
        t0 = time.perf_counter()
        with jax.profiler.trace(logdir, create_perfetto_trace=True):
            for _ in range(steps):
                runner.step()
        wall = (time.perf_counter() - t0) / steps
        path = glob.glob(f"{logdir}/**/*perfetto_trace.json.gz", recursive=True)[0]
        with gzip.open(path) as f:
            events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    groups = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and e["name"] in categories:
            groups[categories[e["name"]]] += e.get("dur", 0) / 1e3 / steps
    return wall * 1e3, groups


def profile_torch(name, mode, size, batch, steps):
    from torch.profiler import ProfilerActivity, profile

    runner = bench.TorchRunner(name, mode, batch, size, "float32")
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            runner.step()
    wall = (time.perf_counter() - t0) / steps
    ops = {r.key: r.self_cpu_time_total / 1e3 / steps for r in prof.key_averages()}
    return wall * 1e3, ops


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--mode", choices=("train", "infer"), default="train")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    keep_freed_memory()
    bench.limit_threads(args.threads)

    wall, groups = profile_jax(args.model, args.mode, args.size, args.batch, args.steps)
    total = sum(groups.values())
    print(f"jaxzoo {args.model} {args.mode}, {args.size} px, batch {args.batch}: {wall:.0f} ms per step, "
          f"{total:.0f} ms in XLA ops\n\n| kind of op | ms per step | share |\n|---|---|---|")
    for kind, ms in groups.most_common():
        print(f"| {kind} | {ms:.0f} | {100 * ms / total:.0f}% |")

    wall, ops = profile_torch(args.model, args.mode, args.size, args.batch, args.steps)
    print(f"\ntorch {args.model}: {wall:.0f} ms per step\n\n| aten op (self time) | ms per step |"
          f"\n|---|---|")
    for key, ms in sorted(ops.items(), key=lambda kv: -kv[1])[:12]:
        print(f"| {key} | {ms:.1f} |")


if __name__ == "__main__":
    main()
