"""Side-by-side speed of jaxzoo and torchvision: train step and inference images/s.

Both run in one process on the same batch, resolution and number of threads. Each repeat times
``--steps`` jaxzoo calls and then ``--steps`` torch calls, so load from other processes hits both;
the table reports the median over repeats and the ratio jaxzoo/torch of those medians.

Train mode is one full Adam step (forward, backward, update) on both sides; torch runs
channels_last by default (the faster layout for torch's CPU convs here; ``--torch-format``).
Infer mode is an eval-mode forward (torch under ``inference_mode``).

Threads: torch gets ``torch.set_num_threads(T)``. XLA:CPU sizes its thread pool from the CPUs the
process may run on, so the process is pinned to T CPUs (``os.sched_setaffinity``) before JAX starts;
with T equal to the machine's core count nothing changes.
"""
from __future__ import annotations

import csv
import dataclasses
import os
import resource
import statistics
import time
from typing import Any, Sequence

import numpy as np

COLUMNS = ["model", "mode", "batch", "size", "dtype", "threads", "jaxzoo_img_s", "torch_img_s",
           "ratio", "compile_s", "jaxzoo_mem_mib", "peak_rss_mib"]


@dataclasses.dataclass
class Row:
    model: str
    mode: str
    batch: int
    size: int
    dtype: str
    threads: int
    jaxzoo_img_s: float
    torch_img_s: float | None
    ratio: float | None
    compile_s: float
    jaxzoo_mem_mib: float | None
    peak_rss_mib: float

    def cells(self) -> list[str]:
        def fmt(v, digits):
            return "-" if v is None else f"{v:.{digits}f}"

        return [self.model, self.mode, str(self.batch), str(self.size), self.dtype,
                str(self.threads), fmt(self.jaxzoo_img_s, 2), fmt(self.torch_img_s, 2),
                fmt(self.ratio, 3), fmt(self.compile_s, 1), fmt(self.jaxzoo_mem_mib, 0),
                fmt(self.peak_rss_mib, 0)]


def limit_threads(threads: int) -> None:
    """Pin this process to ``threads`` CPUs; call before JAX creates its CPU client."""
    cpus = sorted(os.sched_getaffinity(0))
    if threads < len(cpus):
        os.sched_setaffinity(0, cpus[:threads])


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def _cross_entropy_jax(outputs, labels):
    import jax
    import jax.numpy as jnp

    # Auxiliary heads (GoogLeNet, Inception v3) weigh 0.3 each, as in their training recipes.
    outs = outputs if isinstance(outputs, tuple) else (outputs,)
    losses = [-jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(o.astype(jnp.float32)),
                                            labels[:, None], axis=1)) for o in outs]
    return losses[0] + 0.3 * sum(losses[1:])


def _cross_entropy_torch(outputs, labels):
    import torch.nn.functional as F

    outs = tuple(outputs) if isinstance(outputs, tuple) else (outputs,)
    losses = [F.cross_entropy(o.float(), labels) for o in outs]
    return losses[0] + 0.3 * sum(losses[1:])


class JaxRunner:
    def __init__(self, name: str, mode: str, batch: int, size: int, dtype: str, seed: int = 0):
        import jax
        import jax.numpy as jnp
        import optax

        import jaxzoo

        self.jax = jax
        model = jaxzoo.create_model(name, num_classes=1000, dtype=getattr(jnp, dtype))
        rng = np.random.default_rng(seed)
        self.x = jnp.asarray(rng.standard_normal((batch, size, size, 3)).astype(np.float32))
        self.y = jnp.asarray(rng.integers(0, 1000, batch))
        variables = jax.jit(lambda k, x: model.init(k, x, train=False))(
            jax.random.PRNGKey(seed), self.x)
        start_rss = _peak_rss_mib()

        if mode == "train":
            tx = optax.adam(3e-4)
            params, batch_stats = variables["params"], variables.get("batch_stats", {})
            self.state = (params, batch_stats, tx.init(params), jax.random.PRNGKey(seed))

            def train_step(state, x, y):
                params, batch_stats, opt_state, key = state
                key, dropout_key = jax.random.split(key)

                def loss_fn(p):
                    out, updates = model.apply({"params": p, "batch_stats": batch_stats}, x,
                                               train=True, mutable=["batch_stats"],
                                               rngs={"dropout": dropout_key})
                    return _cross_entropy_jax(out, y), updates["batch_stats"]

                (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
                updates, opt_state = tx.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), new_stats, opt_state, key), loss

            fn = jax.jit(train_step, donate_argnums=(0,))
            args = (self.state, self.x, self.y)
        else:
            self.state = variables
            fn = jax.jit(lambda v, x: model.apply(v, x, train=False))
            args = (self.state, self.x)

        t0 = time.perf_counter()
        self.compiled = fn.lower(*args).compile()
        self.compile_s = time.perf_counter() - t0
        self.mode = mode
        self.step()  # first run: allocations, thread pool start-up
        self.mem_mib = self._memory_mib()
        self.rss_delta_mib = _peak_rss_mib() - start_rss

    def _memory_mib(self) -> float | None:
        try:
            m = self.compiled.memory_analysis()
            total = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
                     - m.alias_size_in_bytes)
            return total / 2**20
        except Exception:  # not every backend reports it
            return None

    def step(self) -> None:
        if self.mode == "train":
            self.state, loss = self.compiled(self.state, self.x, self.y)
            loss.block_until_ready()
        else:
            self.jax.block_until_ready(self.compiled(self.state, self.x))


class TorchRunner:
    def __init__(self, name: str, mode: str, batch: int, size: int, dtype: str,
                 memory_format: str = "channels_last", seed: int = 0):
        import torch

        from jaxzoo.convert import parity

        self.torch = torch
        self.mode = mode
        self.model = parity.torchvision_model(name)
        fmt = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
        self.model = self.model.to(memory_format=fmt)
        gen = torch.Generator().manual_seed(seed)
        self.x = torch.randn(batch, 3, size, size, generator=gen).to(memory_format=fmt)
        self.y = torch.randint(0, 1000, (batch,), generator=gen)
        self.autocast = dtype == "bfloat16"
        if mode == "train":
            self.model.train()
            self.opt = torch.optim.Adam(self.model.parameters(), lr=3e-4)
        else:
            self.model.eval()
        for _ in range(2):  # oneDNN builds its kernels in the first calls
            self.step()

    def step(self) -> None:
        torch = self.torch
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            if self.mode == "train":
                self.opt.zero_grad(set_to_none=True)
                loss = _cross_entropy_torch(self.model(self.x), self.y)
                loss.backward()
                self.opt.step()
            else:
                with torch.inference_mode():
                    self.model(self.x)


def _images_per_s(runner, steps: int, batch: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        runner.step()
    return steps * batch / (time.perf_counter() - t0)


def bench_one(name: str, mode: str, *, batch: int, size: int, dtype: str, threads: int,
              repeats: int, steps: int, compare: str | None, torch_format: str) -> Row:
    from jaxzoo.models.registry import get_spec

    ours = JaxRunner(name, mode, batch, size, dtype)
    theirs = None
    if compare == "torch" and get_spec(name).torchvision:
        theirs = TorchRunner(name, mode, batch, size, dtype, torch_format)
    ours_ips, theirs_ips = [], []
    for _ in range(repeats):  # interleaved: each repeat times both
        ours_ips.append(_images_per_s(ours, steps, batch))
        if theirs is not None:
            theirs_ips.append(_images_per_s(theirs, steps, batch))
    jz = statistics.median(ours_ips)
    tv = statistics.median(theirs_ips) if theirs_ips else None
    return Row(name, mode, batch, size, dtype, threads, jz, tv, jz / tv if tv else None,
               ours.compile_s, ours.mem_mib, _peak_rss_mib())


def markdown(rows: Sequence[Row]) -> str:
    header = ["model", "mode", "batch", "size", "dtype", "threads", "jaxzoo img/s", "torch img/s",
              "ratio", "compile s", "jaxzoo MiB", "peak RSS MiB"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_csv(path: str, rows: Sequence[Row]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for r in rows:
            writer.writerow(["" if getattr(r, c) is None else getattr(r, c) for c in COLUMNS])


def run(models: Sequence[str], modes: Sequence[str], *, batch: int, size: int, dtype: str,
        threads: int, repeats: int, steps: int, compare: str | None, torch_format: str,
        out: str | None, cache_dir: str | None = None, log: Any = print) -> list[Row]:
    limit_threads(threads)
    import jax
    import torch

    torch.set_num_threads(threads)
    if cache_dir:
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    rows = []
    for name in models:
        for mode in modes:
            row = bench_one(name, mode, batch=batch, size=size, dtype=dtype, threads=threads,
                            repeats=repeats, steps=steps, compare=compare,
                            torch_format=torch_format)
            log(" ".join(f"{h}={c}" for h, c in zip(COLUMNS, row.cells())))
            rows.append(row)
    table = markdown(rows)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            f.write(table)
        write_csv(os.path.splitext(out)[0] + ".csv", rows)
    return rows
