"""Exceptions raised when the backward signal of BPTT explodes."""

__all__ = ["GradientOverflowError", "DivergenceError"]


class GradientOverflowError(FloatingPointError):
    """delta[t] = dL/dh[t] became non-finite, or its norm passed ``max_norm``, during BPTT.

    Attributes
    ----------
    time_step : int
        The time step t at which the backward pass stopped (it runs from T-1 down to 0).
    norm : float
        ||delta[t]||_2 over the batch at that step (inf or nan when non-finite).
    delta_norms : numpy.ndarray or None
        ||delta[t]|| for every step the backward pass reached (NaN for the others).
    step : int or None
        The training step, when raised by a training loop.
    parameter : str or None
        The parameter blamed (a training loop's forensics: the one whose gradient is
        non-finite or largest relative to its weight), when known.
    batch_elements : tuple of int
        The batch elements whose backward signal overflowed or was largest at time_step.
    verdict, norm64 : str or None, float
        The float64 second opinion on a float32 step ("real", "disputed" or "artefact")
        and the float64 gradient norm (NaN when not run).
    """

    def __init__(self, time_step, norm, *, max_norm=None, delta_norms=None, step=None,
                 parameter=None, batch_elements=(), verdict=None, norm64=float("nan")):
        self.time_step = int(time_step)
        self.norm = float(norm)
        self.max_norm = max_norm
        self.delta_norms = delta_norms
        self.step = step
        self.parameter = parameter
        self.batch_elements = tuple(batch_elements)
        self.verdict, self.norm64 = verdict, float(norm64)
        where = f"at time step t={self.time_step}"
        if step is not None:
            where = f"at training step {step}, " + where
        if max_norm is not None and self.norm == self.norm and self.norm != float("inf"):
            what = f"||delta[t]|| = {self.norm:.6g} exceeded max_norm = {max_norm:.6g}"
        else:
            what = f"the backward signal delta[t] = dL/dh[t] became non-finite (norm {self.norm})"
        blame = ""
        if parameter is not None:
            blame = f" Blame: {parameter}"
            if self.batch_elements:
                blame += f", batch elements {list(self.batch_elements)}"
            if verdict:
                blame += f"; float64 says {verdict} (norm {self.norm64:.4g})"
            blame += "."
        super().__init__(
            f"gradient overflow {where}: {what}.{blame} Backpropagation through time multiplies "
            "diag(1 - h^2) W_hh once per step, so it grows geometrically when W_hh's singular "
            "values exceed 1. Try gradient clipping (rnn_backward(..., clip_delta=...) or "
            "clip_by_global_norm), a W_hh with a smaller spectral radius, or float64.")


class DivergenceError(FloatingPointError):
    """Training gave up: the rollback policy saw max_retries consecutive failed steps."""
