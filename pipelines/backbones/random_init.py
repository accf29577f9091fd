"""Random weights for the same architecture: the "random" arm of the comparison.

Every float variable is re-initialised by its role, read from its name and shape:

==================================  ===============================================
role                                value
==================================  ===============================================
BN ``gamma``/``scale``              1
BN ``moving_variance``/``variance`` 1
BN ``beta``/``offset``              0
BN ``moving_mean``/``mean``         0
``bias``/``biases``, other rank-1   0
depthwise kernel ``(kh, kw, c, m)`` He normal, fan-in ``kh*kw``
conv kernel ``(kh, kw, in, out)``   He normal, fan-in ``kh*kw*in`` (ReLU-family nets)
dense kernel ``(in, out)``          Glorot uniform
==================================  ===============================================

Draws are seeded (NumPy ``default_rng(seed)``, in variable order), so the same seed gives
the same random network in every process. Integer variables and scalars are left alone.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

import numpy as np

_ROLES = [
    ("ones", re.compile(r"(gamma|moving_variance|variance|/scale)(:\d+)?$", re.IGNORECASE)),
    ("zeros", re.compile(r"(beta|moving_mean|mean|offset|bias|biases)(:\d+)?$", re.IGNORECASE)),
]


def role_of(name: str, shape: tuple[int, ...]) -> str:
    """``ones``, ``zeros``, ``he_depthwise``, ``he_conv``, ``glorot_dense`` or ``keep``."""
    for role, pattern in _ROLES:
        if pattern.search(name):
            return role
    if len(shape) == 4:
        return "he_depthwise" if "depthwise" in name.lower() else "he_conv"
    if len(shape) == 2:
        return "glorot_dense"
    if len(shape) == 1:
        return "zeros"
    return "keep"


def draw(role: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray | None:
    """A fresh value for a variable of ``role`` and ``shape``; None for ``keep``."""
    if role == "ones":
        return np.ones(shape, np.float32)
    if role == "zeros":
        return np.zeros(shape, np.float32)
    if role in ("he_conv", "he_depthwise"):
        kh, kw, cin, _ = shape
        fan_in = kh * kw * (1 if role == "he_depthwise" else cin)
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    if role == "glorot_dense":
        limit = np.sqrt(6.0 / (shape[0] + shape[1]))
        return rng.uniform(-limit, limit, shape).astype(np.float32)
    return None


def random_values(variables: Iterable, seed: int) -> tuple[list[np.ndarray | None], Counter]:
    """The values :func:`reinitialise` gives ``variables`` (None: left alone) and how many
    got each role, without assigning them."""
    rng = np.random.default_rng(seed)
    roles: Counter = Counter()
    values: list[np.ndarray | None] = []
    for v in variables:
        if not v.dtype.is_floating:
            roles["keep"] += 1
            values.append(None)
            continue
        shape = tuple(int(d) for d in v.shape)
        role = role_of(v.name, shape)
        value = draw(role, shape, rng)
        roles[role] += 1
        values.append(None if value is None else value.astype(v.dtype.as_numpy_dtype))
    return values, roles


def assign_values(variables: Iterable, values: list[np.ndarray | None]) -> None:
    """Assign :func:`random_values`' ``values`` to ``variables`` (None: left alone)."""
    for v, value in zip(variables, values, strict=True):
        if value is not None:
            v.assign(value)


def reinitialise(variables: Iterable, seed: int) -> Counter:
    """Assign random values to TF ``variables`` in place; return how many got each role."""
    variables = list(variables)
    values, roles = random_values(variables, seed)
    assign_values(variables, values)
    return roles
