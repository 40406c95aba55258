"""Train a jaxzoo model: ``python train.py --config=NAME [--workdir=DIR] [--config.KEY=VALUE ...]``.

NAME is a registered model (``resnet34``, ``googlenet``, ...; its config derives from the registry
unless ``configs/NAME.py`` says more) or a path to a config file; append ``:shapes`` for the
built-in offline dataset (``--config=resnet34:shapes``), ``:WEIGHTS`` for torchvision's recipe
that produced those weights (``--config=resnet50:IMAGENET1K_V2``). The workdir (default
``runs/NAME``) receives config.json, class_names.json, metrics.jsonl, curves.png and checkpoints;
rerunning the same command resumes from the latest checkpoint.

Exit status: 0 when training is done, 1 on an error, EXIT_INTERRUPTED (75) when SIGTERM or SIGINT
stopped it after saving a checkpoint of the current step (run the same command to resume).
"""
import os
import shlex
import sys

from jaxzoo import environment

environment.quiet_tensorflow()

from absl import app, flags  # noqa: E402

from jaxzoo.train import configs  # noqa: E402

EXIT_INTERRUPTED = 75  # sysexits.h's EX_TEMPFAIL: not finished, try again (it resumes)


def split_config_args(argv: list[str]) -> tuple[list[str], str | None, list[str]]:
    """Take ``--config=NAME[:PRESET]`` and every ``--config.KEY=VALUE`` (or ``--config.KEY
    VALUE``) out of ``argv``: returns the rest of argv, the config spec (None when absent) and
    the overrides as ``KEY=VALUE``, for ``configs.load_config`` and ``configs.apply_overrides``."""
    rest, spec, overrides = [], None, []
    args = iter(argv)
    for arg in args:
        if arg == "--config":
            spec = next(args, "")
        elif arg.startswith("--config="):
            spec = arg[len("--config="):]
        elif arg.startswith("--config."):
            item = arg[len("--config."):]
            overrides.append(item if "=" in item else f"{item}={next(args, '')}")
        else:
            rest.append(arg)
    return rest, spec, overrides


def load_config(spec: str, overrides: list[str]):
    """The config ``--config=SPEC`` names with the ``--config.KEY=VALUE`` overrides applied;
    a bad name, preset, field or value is a one-line error."""
    try:
        return configs.apply_overrides(configs.load_config(spec), overrides)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None


flags.DEFINE_string("config", None, "NAME[:PRESET]: a registered model (`python -m jaxzoo list`) or "
                    "a path to a config file; NAME:shapes for the offline dataset, "
                    "NAME:WEIGHTS for torchvision's recipe (`python -m jaxzoo recipe`). Override "
                    "any field with --config.KEY=VALUE")
flags.DEFINE_string("workdir", None, "where checkpoints, metrics and curves go (default runs/NAME)")
flags.DEFINE_bool("restart", False, "start over in a workdir that holds another run: the old run "
                  "is moved aside to WORKDIR.old-<time> (nothing is deleted)")
flags.DEFINE_bool("distributed", False, "multi-process: call jax.distributed.initialize() (also "
                  "done when JAX_COORDINATOR_ADDRESS is set)")


def compilation_cache_dir(config) -> str | None:
    """``config.compilation_cache_dir``, else ``$JAXZOO_COMPILATION_CACHE``, else
    ``~/.cache/jaxzoo/xla``; None when that is ``off`` or ``none``."""
    return environment.compilation_cache(config.compilation_cache_dir)


def initialize_distributed(force: bool = False) -> bool:
    """``jax.distributed.initialize()`` for a multi-process run (before JAX touches a device),
    when ``force`` (``--distributed``) or ``JAX_COORDINATOR_ADDRESS`` (host:port of process 0) is
    set. The process count and id come from ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` when
    set, otherwise from the cluster JAX detects (SLURM, Open MPI, Kubernetes, Cloud TPU). CPU
    processes exchange gradients over gloo, JAX's default."""
    try:
        address, count, index = environment.coordinator()
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if not (force or address):
        return False
    import jax

    try:
        jax.distributed.initialize(coordinator_address=address, num_processes=count,
                                   process_id=index)
    except ValueError as e:
        raise SystemExit(f"error: jax.distributed.initialize() failed: {e}. Outside a cluster that "
                         f"JAX detects (SLURM, Open MPI, Kubernetes, Cloud TPU), set "
                         f"JAX_COORDINATOR_ADDRESS=HOST:PORT (process 0's host), "
                         f"JAX_NUM_PROCESSES and JAX_PROCESS_ID for every process") from None
    return True


def _user_errors() -> tuple:
    """The errors that are reported in one line (what was wrong and what to do), no traceback."""
    from jaxzoo.train import TrainingDiverged

    data = sys.modules.get("jaxzoo.data")  # imported (with TensorFlow) only when data is loaded
    return (TrainingDiverged, ValueError, FileNotFoundError, NotADirectoryError,
            IsADirectoryError, PermissionError, FileExistsError,
            *((data.DatasetUnavailable,) if data else ()))


def run(config, workdir: str, command: str | None = None, restart: bool = False,
        **kwargs) -> int:
    """Train (``jaxzoo.train.train_and_evaluate(config, workdir, **kwargs)``) and report how it
    ended; returns the exit status. ``command`` is what to run again to resume; ``restart``
    first moves a run already in ``workdir`` aside (``jaxzoo.train.workdir.move_aside``)."""
    import jax

    from jaxzoo.train import TrainingInterrupted, train_and_evaluate

    is_main = jax.process_index() == 0
    if restart:  # a config that cannot train leaves the old run where it is
        from jaxzoo.train import workdir as run_workdir

        try:
            configs.validate(config)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            return 1

        moved, failed = None, False
        try:
            moved = run_workdir.move_aside(workdir) if is_main else None
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            failed = True
        if jax.process_count() > 1:  # the others start once the old run is out of the way
            from jax.experimental import multihost_utils

            failed = bool(multihost_utils.broadcast_one_to_all(failed))  # all stop together
        if failed:
            return 1
        if moved:
            print(f"moved the previous run in {workdir} to {moved}", flush=True)
    if is_main:
        print(f"training {config.model} on {config.dataset} with {jax.device_count()} "
              f"{jax.devices()[0].platform} device(s) in {jax.process_count()} process(es); "
              f"workdir {workdir}", flush=True)
    try:
        records = train_and_evaluate(config, workdir, **kwargs)
    except TrainingInterrupted as e:
        if is_main:
            again = f". Resume with: {command}" if command else ""
            print(f"stopped: {e}{again}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except Exception as e:
        if not isinstance(e, _user_errors()):
            raise
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    if records and is_main:
        print(f"done: best val_accuracy {max(r['val_accuracy'] for r in records):.3f}; "
              f"workdir {os.path.abspath(workdir)}")
    return 0


def main(argv, config, config_name, command):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    import jax
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint at INFO
    initialize_distributed(flags.FLAGS.distributed)
    cache = compilation_cache_dir(config)
    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
    workdir = flags.FLAGS.workdir or os.path.join("runs", config_name)
    return run(config, workdir, command, restart=flags.FLAGS.restart)


if __name__ == "__main__":
    from jaxzoo.host_memory import keep_freed_memory

    keep_freed_memory()  # before JAX starts its threads
    command = shlex.join(["python", *sys.argv])
    argv, spec, overrides = split_config_args(sys.argv)
    if not spec:
        raise SystemExit("error: name a config: python train.py --config=NAME[:PRESET], NAME a "
                         "model of `python -m jaxzoo list` (e.g. --config=resnet34:shapes)")
    config = load_config(spec, overrides)
    sys.argv = argv
    app.run(lambda a: main(a, config, configs.config_name(spec), command), argv=argv)
