"""How long ``get_datasets("folder:PATH")`` takes to start on a large image folder, first and later.

    python benchmarks/folder_startup.py --files 100000 --classes 500 --root /tmp/folder100k
    python benchmarks/folder_startup.py --files 100000 --root /tmp/folder100k --processes 2

Generates (once) an ImageFolder tree of ``--files`` copies of one small JPEG (128x96, ~2 KB)
under ``--classes`` class folders, then starts fresh Python processes that each call
``get_datasets`` and print the seconds it took, the process's peak RSS (VmHWM) and its RSS
before the call (TensorFlow and jaxzoo imported), and how many files the process checked.
Runs ``--starts`` starts in a row with the folder cache (``JAXZOO_FOLDER_CACHE``) emptied before
the first: the first start checks every file, the later ones read the manifest. With
``--processes N`` each start is N processes that split the check. ``--baseline DIR`` times a
start of another checkout (one without the manifest checks every file every time) before each.
"""
import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

_START = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
from jaxzoo.data import folder, get_datasets

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
before = rss("VmRSS")
start = time.perf_counter()
data = get_datasets("folder:" + sys.argv[1], image_size=32, global_batch_size=32,
                    process_index=int(sys.argv[2]), process_count=int(sys.argv[3]))
seconds = time.perf_counter() - start
stats = getattr(folder, "last_check", None)
print(json.dumps({"seconds": seconds, "peak_rss_mb": rss("VmHWM"), "rss_before_mb": before,
                  "num_train": data.num_train, "num_val": data.num_val,
                  "checked": stats.checked if stats else None}))
"""


def make_tree(root: str, files: int, classes: int) -> None:
    """``files`` copies of one 128x96 JPEG in ``classes`` folders (skipped if ``root`` exists)."""
    if os.path.isdir(root):
        return
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    gradient = np.linspace(0, 255, 128 * 96 * 3).reshape(96, 128, 3).astype(np.uint8)
    Image.fromarray(gradient).save(buffer, format="JPEG", quality=75)
    jpeg = buffer.getvalue()
    partial = root + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    for c in range(classes):
        folder = os.path.join(partial, f"class{c:04d}")
        os.makedirs(folder)
        for i in range(c, files, classes):
            with open(os.path.join(folder, f"{i:07d}.jpg"), "wb") as f:
                f.write(jpeg)
    os.rename(partial, root)


def start(root: str, processes: int, env: dict, checkout: str | None = None) -> list[dict]:
    """One start of ``processes`` processes; ``checkout``: import jaxzoo from that folder."""
    if checkout:
        env = {**env, "PYTHONPATH": checkout}
    procs = [subprocess.Popen([sys.executable, "-c", _START, root, str(i), str(processes)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                              cwd=checkout)
             for i in range(processes)]
    results = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode:
            raise RuntimeError(f"a start failed:\n{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def main(argv=None) -> list[list[dict]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=500)
    parser.add_argument("--root", default=None, help="where the tree is made (kept for reuse)")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--starts", type=int, default=2)
    parser.add_argument("--baseline", default=None,
                        help="another checkout of jaxzoo (e.g. `git archive` of an older "
                             "commit): one of its starts is timed before each start")
    args = parser.parse_args(argv)
    root = args.root or os.path.join(tempfile.gettempdir(), f"jaxzoo_folder_{args.files}")
    began = time.perf_counter()
    make_tree(root, args.files, args.classes)
    print(f"tree: {args.files} files in {args.classes} class folders at {root} "
          f"(ready in {time.perf_counter() - began:.1f} s)", flush=True)
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "JAXZOO_FOLDER_CACHE": cache}
        runs = []
        for number in range(1, args.starts + 1):
            if args.baseline:
                for index, r in enumerate(start(root, args.processes, env, args.baseline)):
                    print(f"baseline {args.baseline}, process {index}: {r['seconds']:.2f} s, "
                          f"peak RSS {r['peak_rss_mb']:.0f} MB ({r['rss_before_mb']:.0f} MB "
                          f"before the call)", flush=True)
            results = start(root, args.processes, env)
            runs.append(results)
            for index, r in enumerate(results):
                print(f"start {number}, process {index} of {args.processes}: "
                      f"{r['seconds']:.2f} s, checked {r['checked']} files, peak RSS "
                      f"{r['peak_rss_mb']:.0f} MB ({r['rss_before_mb']:.0f} MB before the call), "
                      f"{r['num_train']} train / {r['num_val']} val", flush=True)
    return runs


if __name__ == "__main__":
    main()
