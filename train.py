"""Train a jaxzoo model: ``python train.py --config=NAME [--workdir=DIR] [--config.KEY=VALUE ...]``.

NAME is a file of configs/ (``resnet34``, ``googlenet``, ...) or a path to a config file; append
``:shapes`` for the built-in offline dataset (``--config=resnet34:shapes``). The workdir (default
``runs/NAME``) receives config.json, class_names.json, metrics.jsonl, curves.png and checkpoints;
rerunning the same command resumes from the latest checkpoint.

Exit status: 0 when training is done, 1 on an error, EXIT_INTERRUPTED (75) when SIGTERM or SIGINT
stopped it after saving a checkpoint of the current step (run the same command to resume).
"""
import os
import shlex
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jaxzoo.train import configs  # noqa: E402
from jaxzoo.train.configs import available_configs  # noqa: E402,F401  (train.available_configs)

EXIT_INTERRUPTED = 75  # sysexits.h's EX_TEMPFAIL: not finished, try again (it resumes)


def resolve_config_arg(argv: list[str]) -> tuple[list[str], str | None]:
    """Turn ``--config=NAME[:PRESET]`` into ``--config=configs/NAME.py[:PRESET]``; returns the new
    argv and the config name (None when the flag is absent)."""
    argv = list(argv)
    if "--config" in argv[:-1]:  # "--config NAME" -> "--config=NAME"
        i = argv.index("--config")
        argv[i:i + 2] = ["--config=" + argv[i + 1]]
    name = None
    for i, arg in enumerate(argv):
        if not arg.startswith("--config="):
            continue
        path, _, preset = arg[len("--config="):].partition(":")
        try:
            path, name = configs.config_file(path)
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
        argv[i] = "--config=" + path + (f":{preset}" if preset else "")
    return argv, name


def check_overrides(argv: list[str]) -> tuple[list[str], dict]:
    """Exit with a one-line error naming the closest fields when a ``--config.KEY=VALUE`` names
    a field the config does not have (ml_collections would print a traceback). Returns argv
    without the ``--config.model_kwargs.KEY=VALUE`` that set a model option the config does not
    list (ml_collections cannot add one), and those options, for ``main`` to add."""
    config_arg = next((a for a in argv if a.startswith("--config=")), None)
    if config_arg is None:
        return argv, {}
    path, _, preset = config_arg[len("--config="):].partition(":")
    config = configs.load_config(path, preset or None)
    kept, model_kwargs = [], {}
    for arg in argv:
        key, _, value = arg[len("--config."):].partition("=")
        try:
            if arg.startswith("--config.model_kwargs.") and "=" in arg and \
                    key.split(".")[1] not in config.model_kwargs:
                name, parsed = configs.model_kwargs_override(config, key.split(".", 1)[1], value)
                model_kwargs[name] = parsed
                continue
            if arg.startswith("--config."):
                configs.check_override(config, key)
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
        kept.append(arg)
    return kept, model_kwargs


CONFIG = config_flags.DEFINE_config_file(
    "config", None, "configs/NAME.py or NAME (see configs/); NAME:shapes for the offline dataset",
    lock_config=True)
flags.DEFINE_string("workdir", None, "where checkpoints, metrics and curves go (default runs/NAME)")
flags.DEFINE_bool("distributed", False, "multi-process: call jax.distributed.initialize() (also "
                  "done when JAX_COORDINATOR_ADDRESS is set)")
flags.mark_flag_as_required("config")


def compilation_cache_dir(config) -> str | None:
    path = (config.compilation_cache_dir or os.environ.get("JAXZOO_COMPILATION_CACHE")
            or os.path.join(os.path.expanduser("~"), ".cache", "jaxzoo", "xla"))
    return None if path.lower() in ("off", "none") else path


def initialize_distributed(force: bool = False) -> bool:
    """``jax.distributed.initialize()`` for a multi-process run (before JAX touches a device),
    when ``force`` (``--distributed``) or ``JAX_COORDINATOR_ADDRESS`` (host:port of process 0) is
    set. The process count and id come from ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` when
    set, otherwise from the cluster JAX detects (SLURM, Open MPI, Kubernetes, Cloud TPU). CPU
    processes exchange gradients over gloo, JAX's default."""
    address = os.environ.get("JAX_COORDINATOR_ADDRESS")
    if not (force or address):
        return False
    import jax

    count, index = os.environ.get("JAX_NUM_PROCESSES"), os.environ.get("JAX_PROCESS_ID")
    try:
        jax.distributed.initialize(coordinator_address=address,
                                   num_processes=int(count) if count else None,
                                   process_id=int(index) if index else None)
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
            *((data.DatasetUnavailable,) if data else ()))


def run(config, workdir: str, command: str | None = None, **kwargs) -> int:
    """Train (``jaxzoo.train.train_and_evaluate(config, workdir, **kwargs)``) and report how it
    ended; returns the exit status. ``command`` is what to run again to resume."""
    import jax

    from jaxzoo.train import TrainingInterrupted, train_and_evaluate

    is_main = jax.process_index() == 0
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


def main(argv, config_name, command, model_kwargs=None):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    import jax
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint at INFO
    initialize_distributed(flags.FLAGS.distributed)
    config = CONFIG.value
    if model_kwargs:
        with config.unlocked():
            config.model_kwargs.update(model_kwargs)
    cache = compilation_cache_dir(config)
    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
    workdir = flags.FLAGS.workdir or os.path.join("runs", config_name)
    return run(config, workdir, command)


if __name__ == "__main__":
    from jaxzoo.host_memory import keep_freed_memory

    keep_freed_memory()  # before JAX starts its threads
    command = shlex.join(["python", *sys.argv])
    argv, config_name = resolve_config_arg(sys.argv)
    argv, model_kwargs = check_overrides(argv)
    sys.argv = argv
    app.run(lambda a: main(a, config_name, command, model_kwargs), argv=argv)
