"""The model zoo: each model is one module registering itself in :data:`MODELS`.

A new model is one file plus one import line below.
"""

from fl.models import convnet, lenet, mlp, resnet, vit  # noqa: F401  (registration)
from fl.models.dropout import (
    MaskedDropout,
    dropout_sites,
    has_dropout,
    record_masks,
    recorded_masks,
    set_dropout_generator,
    set_masks,
)
from fl.models.registry import MODELS, build_model, count_parameters, model_options

__all__ = [
    "MODELS",
    "MaskedDropout",
    "build_model",
    "count_parameters",
    "dropout_sites",
    "has_dropout",
    "model_options",
    "record_masks",
    "recorded_masks",
    "set_dropout_generator",
    "set_masks",
]
