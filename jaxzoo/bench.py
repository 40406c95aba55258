"""Side-by-side speed of jaxzoo and torchvision: train step and inference images/s.

Both run in one process on the same batch, resolution and number of threads. Each repeat times
``--steps`` jaxzoo calls and then ``--steps`` torch calls, so load from other processes hits both;
the table reports the median over repeats and the ratio jaxzoo/torch of those medians.

Train mode times the step ``train.py`` runs (``jaxzoo.train.recipe.build_training`` with the
model's config: Adam, its auxiliary-loss weights; the state donated) beside one torch Adam step
with the same loss; torch runs channels_last by default (the faster layout for torch's CPU convs
here; ``--torch-format``). Plain mode times the step a user writes for a plain
``jaxzoo.create_model(name)`` (``plain_train_step``: jit, donated state, optax Adam) beside the
same torch step: what a model built the default way gets. Infer mode times the predictor's forward (``Predictor.forward``: the
eval-mode logits and their softmax) beside torch's eval-mode forward under ``inference_mode``.

Threads: torch gets ``torch.set_num_threads(T)``. XLA:CPU sizes its thread pool from the CPUs the
process may run on, so the process is pinned to T CPUs (``os.sched_setaffinity``) before JAX starts;
with T equal to the machine's core count nothing changes.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import os
import resource
import statistics
import time
from typing import Any, Sequence

import numpy as np

COLUMNS = ["model", "mode", "batch", "size", "dtype", "threads", "jaxzoo_img_s", "torch_img_s",
           "ratio", "compile_s", "jaxzoo_mem_mib", "jaxzoo_peak_mib", "torch_peak_mib"]


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
    jaxzoo_peak_mib: float | None = None
    torch_peak_mib: float | None = None

    def cells(self) -> list[str]:
        def fmt(v, digits):
            return "-" if v is None else f"{v:.{digits}f}"

        return [self.model, self.mode, str(self.batch), str(self.size), self.dtype,
                str(self.threads), fmt(self.jaxzoo_img_s, 2), fmt(self.torch_img_s, 2),
                fmt(self.ratio, 3), fmt(self.compile_s, 1), fmt(self.jaxzoo_mem_mib, 0),
                fmt(self.jaxzoo_peak_mib, 0), fmt(self.torch_peak_mib, 0)]


def limit_threads(threads: int) -> None:
    """Pin this process to ``threads`` CPUs; call before JAX creates its CPU client."""
    cpus = sorted(os.sched_getaffinity(0))
    if threads < len(cpus):
        os.sched_setaffinity(0, cpus[:threads])


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def train_config(name: str, batch: int, dtype: str):
    """The training config of ``name`` (its optimizer and auxiliary-loss weights), at the
    benchmark's batch size and dtype."""
    from jaxzoo.train import configs

    config = configs.load_config(name)
    config.batch_size, config.dtype = batch, dtype
    return config


class JaxRunner:
    """jaxzoo's side: the train step ``train.py`` runs (``build_training`` on a one-device mesh,
    the state donated) or the predictor's forward (``Predictor.forward``)."""

    def __init__(self, name: str, mode: str, batch: int, size: int, dtype: str,
                 lowering: str = "auto", seed: int = 0, remat: str = "none"):
        import jax
        import optax

        from jaxzoo import runtime
        from jaxzoo.models import create_model
        from jaxzoo.models.registry import init_variables
        from jaxzoo.train import make_mesh
        from jaxzoo.train.recipe import build_training
        from jaxzoo.train.step import shard_batch

        self.jax, self.mode = jax, mode
        config = train_config(name, batch, dtype)
        config.remat, config.lowering, config.seed = remat, lowering, seed
        self.aux_loss_weights = tuple(config.aux_loss_weights)
        mesh = make_mesh(jax.devices()[:1])
        lowering = runtime.lowering_for(mesh.devices.flat, lowering)
        rng = np.random.default_rng(seed)
        images = rng.standard_normal((batch, size, size, 3)).astype(np.float32)
        labels = rng.integers(0, 1000, batch).astype(np.int32)

        if mode == "train":
            # The trainer's own model, state and step (jaxzoo.train.recipe), initialized at the
            # benchmark's size.
            model = create_model(name, num_classes=1000, **config.model_kwargs)
            training = build_training(
                config, mesh, num_classes=1000, steps_per_epoch=1000,
                variables=init_variables(model, size, jax.random.PRNGKey(seed)))
            self.state = training.state
            self.batch = shard_batch(mesh, {"image": images, "label": labels})
            fn, self.model = training.train_step, training.model
            args = (self.state, self.batch)
        elif mode == "plain":
            # A user's own step on a plain ``jaxzoo.create_model(name)``: optax Adam, the
            # state donated, nothing of the trainer's.
            model = create_model(name, num_classes=1000, dtype=dtype, **config.model_kwargs)
            variables = init_variables(model, size, jax.random.PRNGKey(seed))
            tx = optax.adam(3e-4)
            self.state = (variables["params"], variables.get("batch_stats", {}),
                          tx.init(variables["params"]))
            self.batch = (jax.device_put(images), jax.device_put(labels))
            fn, self.model = plain_train_step(model, tx), model
            args = (self.state, self.batch)
        else:
            from jaxzoo.predict import Predictor

            model = create_model(name, num_classes=1000, **config.model_kwargs)
            variables = init_variables(model, size, jax.random.PRNGKey(seed))
            predictor = Predictor(name, variables, [str(i) for i in range(1000)], size,
                                  model_kwargs={**config.model_kwargs, "dtype": dtype},
                                  lowering=lowering)
            self.state, self.x = predictor.variables, jax.device_put(images)
            fn = predictor.forward
            args = (self.state, self.x)

        t0 = time.perf_counter()
        self.compiled = fn.lower(*args).compile()
        self.compile_s = time.perf_counter() - t0
        self.step()  # first run: allocations, thread pool start-up
        self.mem_mib = self._memory_mib()

    def _memory_mib(self) -> float | None:
        try:
            m = self.compiled.memory_analysis()
            total = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
                     - m.alias_size_in_bytes)
            return total / 2**20
        except Exception:  # not every backend reports it
            return None

    def step(self) -> None:
        if self.mode in ("train", "plain"):
            self.state, self.metrics = self.compiled(self.state, self.batch)
            self.metrics["loss"].block_until_ready()
        else:
            self.jax.block_until_ready(self.compiled(self.state, self.x))


def plain_train_step(model, tx):
    """``step((params, batch_stats, opt_state), (images, labels)) -> (state, {"loss": ...})``:
    the train step a user writes for a flax model (``jax.jit``, the state donated, the main
    logits' cross-entropy), to time ``create_model``'s default beside the trainer's step."""
    import jax
    import optax

    def step(state, batch):
        params, batch_stats, opt_state = state
        images, labels = batch

        def loss_fn(params):
            outputs, updates = model.apply({"params": params, "batch_stats": batch_stats}, images,
                                           train=True, mutable=["batch_stats"],
                                           rngs={"dropout": jax.random.PRNGKey(0)})
            logits = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            return loss, updates.get("batch_stats", batch_stats)

        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), batch_stats, opt_state), {"loss": loss}

    return jax.jit(step, donate_argnums=(0,))


def torch_device() -> str:
    """Where torch runs beside jaxzoo: the GPU when JAX computes on one (and torch has CUDA)."""
    import jax
    import torch

    return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


class TorchRunner:
    """torchvision's side: one Adam step with the same loss (auxiliary heads weighted as in the
    model's config), or an eval-mode forward under ``inference_mode``; bfloat16 is torch's
    autocast (AMP), on the CPU or the GPU."""

    def __init__(self, name: str, mode: str, batch: int, size: int, dtype: str,
                 memory_format: str = "channels_last", aux_loss_weights=(), seed: int = 0,
                 device: str = "cpu"):
        import torch

        from jaxzoo.convert import parity

        self.torch, self.device = torch, device
        self.mode, self.aux_loss_weights = mode, tuple(aux_loss_weights)
        self.model = parity.torchvision_model(name)
        fmt = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
        self.model = self.model.to(device, memory_format=fmt)
        gen = torch.Generator().manual_seed(seed)
        self.x = torch.randn(batch, 3, size, size, generator=gen).to(device, memory_format=fmt)
        self.y = torch.randint(0, 1000, (batch,), generator=gen).to(device)
        self.autocast = dtype == "bfloat16"
        if mode in ("train", "plain"):
            self.model.train()
            self.opt = torch.optim.Adam(self.model.parameters(), lr=3e-4)
        else:
            self.model.eval()
        for _ in range(2):  # oneDNN builds its kernels in the first calls
            self.step()

    def _loss(self, outputs):
        import torch.nn.functional as F

        logits, *aux = outputs if isinstance(outputs, tuple) else (outputs,)
        loss = F.cross_entropy(logits.float(), self.y)
        for weight, aux_logits in zip(self.aux_loss_weights, aux):
            loss = loss + weight * F.cross_entropy(aux_logits.float(), self.y)
        return loss

    def step(self) -> None:
        torch = self.torch
        with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.autocast):
            if self.mode in ("train", "plain"):
                self.opt.zero_grad(set_to_none=True)
                self._loss(self.model(self.x)).backward()
                self.opt.step()
            else:
                with torch.inference_mode():
                    self.model(self.x)
        if self.device == "cuda":
            torch.cuda.synchronize()


def _images_per_s(runner, steps: int, batch: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        runner.step()
    return steps * batch / (time.perf_counter() - t0)


def peak_rss_apart(framework: str, name: str, mode: str, *, batch: int, size: int, dtype: str,
                   threads: int, lowering: str = "auto", torch_format: str = "channels_last",
                   steps: int = 3, remat: str = "none") -> float:
    """The peak resident memory (MiB) of a process of its own that builds ``framework``'s
    ("jaxzoo" or "torch") runner and runs ``steps`` of it, with the allocator settings of
    ``python -m jaxzoo``: each framework's memory for its own step, not one figure for the
    process that held both."""
    import subprocess
    import sys

    args = [sys.executable, "-m", "jaxzoo.bench", framework, name, mode, str(batch), str(size),
            dtype, str(threads), lowering, torch_format, str(steps), remat]
    out = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    if out.returncode:
        raise RuntimeError(f"measuring {framework}'s peak memory for {name} failed:\n"
                           f"{out.stderr[-2000:]}")
    return float(out.stdout.split()[-1])


def _peak_rss_child(framework, name, mode, batch, size, dtype, threads, lowering,
                    torch_format, steps, remat) -> None:
    from jaxzoo.host_memory import keep_freed_memory

    keep_freed_memory()
    limit_threads(int(threads))
    batch, size, steps = int(batch), int(size), int(steps)
    if framework == "jaxzoo":
        runner = JaxRunner(name, mode, batch, size, dtype, lowering, remat=remat)
    else:
        import torch

        torch.set_num_threads(int(threads))
        weights = tuple(train_config(name, batch, dtype).aux_loss_weights)
        runner = TorchRunner(name, mode, batch, size, dtype, torch_format,
                             aux_loss_weights=weights, device=torch_device())
    for _ in range(steps):
        runner.step()
    print(_own_peak_rss_mib())


def _own_peak_rss_mib() -> float:
    """This process's own peak resident memory (MiB): ``VmHWM``, which starts anew with the
    process's memory at exec, where ``ru_maxrss`` of a child forked from a larger parent keeps
    the parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    return _peak_rss_mib()  # no /proc (not Linux)


def bench_one(name: str, mode: str, *, batch: int, size: int, dtype: str, threads: int,
              repeats: int, steps: int, compare: str | None, torch_format: str,
              lowering: str = "auto", memory: bool = False, remat: str = "none") -> Row:
    from jaxzoo.models.registry import get_spec

    ours = JaxRunner(name, mode, batch, size, dtype, lowering, remat=remat)
    theirs = None
    if compare == "torch" and get_spec(name).torchvision:
        theirs = TorchRunner(name, mode, batch, size, dtype, torch_format,
                             aux_loss_weights=ours.aux_loss_weights, device=torch_device())
    ours_ips, theirs_ips = [], []
    for _ in range(repeats):  # interleaved: each repeat times both
        ours_ips.append(_images_per_s(ours, steps, batch))
        if theirs is not None:
            theirs_ips.append(_images_per_s(theirs, steps, batch))
    jz = statistics.median(ours_ips)
    tv = statistics.median(theirs_ips) if theirs_ips else None
    row = Row(name, mode, batch, size, dtype, threads, jz, tv, jz / tv if tv else None,
              ours.compile_s, ours.mem_mib)
    if memory:
        del ours, theirs
        apart = functools.partial(peak_rss_apart, name=name, mode=mode, batch=batch, size=size,
                                  dtype=dtype, threads=threads, lowering=lowering,
                                  torch_format=torch_format, remat=remat)
        row.jaxzoo_peak_mib = apart("jaxzoo")
        row.torch_peak_mib = apart("torch") if tv is not None else None
    return row


def markdown(rows: Sequence[Row]) -> str:
    header = ["model", "mode", "batch", "size", "dtype", "threads", "jaxzoo img/s", "torch img/s",
              "ratio", "compile s", "jaxzoo XLA MiB", "jaxzoo peak MiB", "torch peak MiB"]
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
        out: str | None, cache_dir: str | None = None, lowering: str = "auto",
        memory: bool = False, remat: str = "none", log: Any = print) -> list[Row]:
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
                            torch_format=torch_format, lowering=lowering, memory=memory,
                            remat=remat)
            log(" ".join(f"{h}={c}" for h, c in zip(COLUMNS, row.cells())))
            rows.append(row)
    table = markdown(rows)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            f.write(table)
        write_csv(os.path.splitext(out)[0] + ".csv", rows)
    return rows


if __name__ == "__main__":  # peak_rss_apart's child process
    import sys

    _peak_rss_child(*sys.argv[1:])
