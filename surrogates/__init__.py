"""Neural physics surrogates (the cheapest fidelity) and GP models for the controller.

Empty until the surrogate fidelity lands; the package exists so the import graph of
ARCHITECTURE.md holds from the first release.
"""

__all__: list[str] = []
