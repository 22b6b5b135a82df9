"""Reconstruction methods: one interface, found by name through entry points."""

from fmri_data.methods.base import IdentifiesStimuli, MethodSettings, ReconstructionMethod
from fmri_data.methods.records import pre_training_notes, run_records, validation_notes
from fmri_data.methods.registry import available_methods, create_method, register_method
from fmri_data.methods.runner import CrossValidatedReconstructions, reconstruct_over_splits

__all__ = [
    "CrossValidatedReconstructions",
    "IdentifiesStimuli",
    "MethodSettings",
    "ReconstructionMethod",
    "available_methods",
    "create_method",
    "pre_training_notes",
    "reconstruct_over_splits",
    "register_method",
    "run_records",
    "validation_notes",
]
