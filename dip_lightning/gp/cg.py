"""Batched conjugate gradients for symmetric positive-definite operators on grid vectors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import InputError


class ConvergenceError(InputError):
    """CG stopped above its tolerance: the system is too ill-conditioned for the settings given.

    An InputError because the fix is a setting (more noise / jitter, a higher max_iter or tolerance).
    """


@dataclass
class CGResult:
    """Solution x (B, *S) of A x = b, iterations run, and the largest final relative residual ‖r‖/‖b‖."""

    solution: torch.Tensor
    iterations: int
    residual: float


def conjugate_gradients(matvec: Callable[[torch.Tensor], torch.Tensor], rhs: torch.Tensor, *,
                        tol: float = 1e-4, max_iter: int = 1000) -> CGResult:
    """Solve A x = b for a batch of right-hand sides b (B, *S) at once; A = `matvec` acts on (B, *S).

    Each batch member has its own step sizes; iteration stops when every relative residual
    ‖r‖/‖b‖ ≤ `tol`. Raises ConvergenceError (with the residual reached) after `max_iter` iterations.
    """
    dims = tuple(range(1, rhs.dim()))
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    p = r.clone()
    rs = (r * r).sum(dims)
    norm_b = rs.sqrt().clamp(min=torch.finfo(rhs.dtype).tiny)
    shape = (-1,) + (1,) * len(dims)
    for iteration in range(1, max_iter + 1):
        ap = matvec(p)
        alpha = rs / (p * ap).sum(dims).clamp(min=torch.finfo(rhs.dtype).tiny)
        x += alpha.view(shape) * p
        r -= alpha.view(shape) * ap
        rs_new = (r * r).sum(dims)
        residual = float((rs_new.sqrt() / norm_b).max())
        if residual <= tol:
            return CGResult(x, iteration, residual)
        p = r + (rs_new / rs).view(shape) * p
        rs = rs_new
    raise ConvergenceError(
        f"conjugate gradients did not converge: relative residual {residual:.3g} after {max_iter} iterations "
        f"(tolerance {tol:g}); the kernel matrix is too ill-conditioned: raise the noise variance or the jitter "
        f"(sigma, kernel.noise_var, kernel.jitter), or max_iter / cg_tol")
