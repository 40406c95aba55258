"""keep_freed_memory(): XLA:CPU's large per-call buffers reuse memory instead of faulting in
fresh pages on every call."""
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")

CALLS = 30
PROBE = f"""
CALLS = {CALLS}
import resource, sys
from jaxzoo.host_memory import keep_freed_memory
applied = keep_freed_memory()
import jax, jax.numpy as jnp
f = jax.jit(lambda x: x * 2.0 + 1.0)
x = jnp.ones((4096, 4096))  # 64 MiB: over glibc's largest mmap threshold
for _ in range(10):  # the heap grows over the first calls, then holds blocks to reuse
    f(x).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(CALLS):
    f(x).block_until_ready()  # a new 64 MiB result each call; the previous one is freed
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / CALLS
print(applied, faults)
"""


def page_faults_per_call(malloc_setting):
    env = dict(os.environ, JAXZOO_MALLOC=malloc_setting, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    return out[0] == "True", float(out[1])


def test_large_xla_buffers_reuse_memory():
    pages = 64 * 2**20 // os.sysconf("SC_PAGE_SIZE")
    applied, faults = page_faults_per_call("reuse")
    assert applied
    # The heap still grows by a block now and then (when a result outlives the next call's
    # allocation: 0-7 of 30 calls here), but most calls reuse a freed block.
    assert faults < 0.5 * pages, f"{faults:.0f} page faults per call with keep_freed_memory()"
    # Without it every call faults in its whole 64 MiB output: what the setting is for.
    applied, faults = page_faults_per_call("system")
    assert not applied
    assert faults > 0.9 * pages
