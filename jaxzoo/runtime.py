"""Choices the programs that run steps make for the devices they run on: the trainer, the
predictor and the benchmark call ``lowering_for`` when they build a model, so the lowering is
fixed in the model they trace (``jaxzoo.models.lowering``).

``JAXZOO_LOWERING=xla`` (or ``cpu``) overrides the choice for debugging and measurement: it is
read here, when a model is built, never while a function is traced.
"""
from __future__ import annotations

from typing import Iterable

import jax

from jaxzoo import environment
from jaxzoo.models import lowering as lowerings


def lowering_for(devices: Iterable[jax.Device] | None = None, choice: str = "auto") -> str:
    """The lowering for models that run on ``devices`` (default: every device): ``choice`` when it
    is "xla" or "cpu"; for "auto", ``$JAXZOO_LOWERING`` if set, else ``lowerings.for_devices``."""
    if choice != "auto":
        return lowerings.check(choice)
    override = environment.lowering()
    if override:
        return lowerings.check(override)
    return lowerings.for_devices(jax.devices() if devices is None else devices)
