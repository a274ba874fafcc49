"""Surrogate models: GP models for the controller (neural physics surrogates come later).

`fit_mf_gp` fits the controller's multi-fidelity GP (BoTorch's `SingleTaskMultiFidelityGP`,
optionally drifting in time) and `fit_unit_cube_gp` a plain ARD GP, whose inputs
`main_effects` scores; `fit_feasibility` learns P(stable | theta) from stability flags, and
`FeasibilityWeightedAcquisition` / `feasibility_weight` / `feasibility_constraint` turn it
into an acquisition weight or constraint. Fitted state is exported as plain data.
"""

from surrogates.gp import (
    FeasibilityModel,
    FeasibilityWeightedAcquisition,
    Hyperparameters,
    feasibility_constraint,
    feasibility_weight,
    fit_feasibility,
    fit_mf_gp,
    fit_unit_cube_gp,
    hyperparameters_of,
    load_hyperparameters,
    main_effects,
)

__all__ = [
    "FeasibilityModel",
    "FeasibilityWeightedAcquisition",
    "Hyperparameters",
    "feasibility_constraint",
    "feasibility_weight",
    "fit_feasibility",
    "fit_mf_gp",
    "fit_unit_cube_gp",
    "hyperparameters_of",
    "load_hyperparameters",
    "main_effects",
]
