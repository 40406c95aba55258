"""torchvision's training recipes as presets: ``--config=MODEL:WEIGHTS`` trains with the settings
of the reference command (``references/classification/README.md``) that produced torchvision's
``WEIGHTS`` for ``MODEL``.

``RECIPES`` maps ``(model, weights)`` to a ``Recipe``; ``recipe_fields(model, weights)`` gives the
config fields ``get_config_for`` applies over the defaults.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Recipe:
    command: str          # the reference command, as the README gives it
    fields: dict          # the config fields that reproduce it (global batch = per-GPU x GPUs)
    acc1: float | None = None  # the weights' published ImageNet top-1


RECIPES: dict[tuple[str, str], Recipe] = {}


def recipe_fields(model: str, weights: str) -> dict:
    """The config fields of the recipe that produced ``model``'s ``weights``."""
    return dict(RECIPES[(model, weights)].fields)
