"""Train a jaxzoo model: ``python train.py --config=NAME [--workdir=DIR] [--config.KEY=VALUE ...]``.

NAME is a file of configs/ (``resnet34``, ``googlenet``, ...) or a path to a config file; append
``:shapes`` for the built-in offline dataset (``--config=resnet34:shapes``). The workdir (default
``runs/NAME``) receives config.json, class_names.json, metrics.jsonl, curves.png and checkpoints;
rerunning the same command resumes from the latest checkpoint.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

ROOT = os.path.dirname(os.path.abspath(__file__))
CONFIG_DIR = os.path.join(ROOT, "configs")
sys.path.insert(0, ROOT)  # config files import configs.default


def available_configs() -> list[str]:
    return sorted(f[:-3] for f in os.listdir(CONFIG_DIR)
                  if f.endswith(".py") and f not in ("__init__.py", "default.py"))


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
        if not path.endswith(".py") and os.sep not in path:
            name = path
            if name not in available_configs():
                raise SystemExit(f"error: unknown config {name!r}. Available configs: "
                                 f"{', '.join(available_configs())} (or a path to a config file)")
            path = os.path.join(CONFIG_DIR, f"{name}.py")
        elif not os.path.isfile(path):
            raise SystemExit(f"error: config file {path} does not exist")
        else:
            name = os.path.splitext(os.path.basename(path))[0]
        argv[i] = "--config=" + path + (f":{preset}" if preset else "")
    return argv, name


CONFIG = config_flags.DEFINE_config_file(
    "config", None, "configs/NAME.py or NAME (see configs/); NAME:shapes for the offline dataset",
    lock_config=True)
flags.DEFINE_string("workdir", None, "where checkpoints, metrics and curves go (default runs/NAME)")
flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize() (multi-host; also done "
                  "when JAX_COORDINATOR_ADDRESS is set)")
flags.mark_flag_as_required("config")


def compilation_cache_dir(config) -> str | None:
    path = (config.compilation_cache_dir or os.environ.get("JAXZOO_COMPILATION_CACHE")
            or os.path.join(os.path.expanduser("~"), ".cache", "jaxzoo", "xla"))
    return None if path.lower() in ("off", "none") else path


def main(argv, config_name):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    import jax
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint at INFO
    if flags.FLAGS.distributed or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize()
    config = CONFIG.value
    cache = compilation_cache_dir(config)
    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
    workdir = flags.FLAGS.workdir or os.path.join("runs", config_name)

    from jaxzoo.train import TrainingDiverged, train_and_evaluate

    print(f"training {config.model} on {config.dataset} with {jax.device_count()} "
          f"{jax.devices()[0].platform} device(s); workdir {workdir}", flush=True)
    try:
        records = train_and_evaluate(config, workdir)
    except (TrainingDiverged, ValueError, FileNotFoundError, NotADirectoryError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    if records:
        print(f"done: best val_accuracy {max(r['val_accuracy'] for r in records):.3f}; "
              f"workdir {os.path.abspath(workdir)}")
    return 0


if __name__ == "__main__":
    argv, config_name = resolve_config_arg(sys.argv)
    sys.argv = argv
    app.run(lambda a: main(a, config_name), argv=argv)
