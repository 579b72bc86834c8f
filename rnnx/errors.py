"""Exceptions raised when the backward signal of BPTT, or one of the gradients, explodes."""

__all__ = ["GradientOverflowError", "DivergenceError"]

# what each output of rnn_backward is, for the messages
_OUTPUTS = {
    "delta": "the backward signal delta[t] = dL/dh[t]",
    "dW_xh": "the gradient dL/dW_xh (a sum over every step)",
    "dW_hh": "the gradient dL/dW_hh (a sum over every step)",
    "db_h": "the gradient dL/db_h (a sum over every step)",
    "dx": "the gradient dL/dx",
    "dh0": "the gradient dL/dh0",
}


class GradientOverflowError(FloatingPointError):
    """A gradient of BPTT became non-finite, or the norm of the backward signal delta[t]
    passed ``max_norm``: no non-finite gradient is ever returned silently.

    Attributes
    ----------
    output : str
        Which output overflowed, by its BackwardResult attribute name: ``"delta"`` (the
        backward signal, checked at every step as the pass runs), or, once the pass
        completed with every delta[t] finite, ``"dW_xh"``, ``"dW_hh"``, ``"db_h"``,
        ``"dx"`` or ``"dh0"``.
    index : tuple of int or None
        The index in that output of its first non-finite entry (None for delta).
    time_step : int
        The time step t where it happened: where the backward pass stopped (it runs from
        T-1 down to 0) for delta, t of dx[t] for dx, 0 for dh0, and -1 for the weight
        gradients, which are sums over every step.
    norm : float
        ||delta[t]||_2 over the batch at that step (inf or nan when non-finite); for the
        other outputs, their first non-finite entry.
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
                 output="delta", index=None, parameter=None, batch_elements=(),
                 verdict=None, norm64=float("nan")):
        if output not in _OUTPUTS:
            raise ValueError(f"output must be one of {sorted(_OUTPUTS)}; got {output!r}")
        self.time_step = int(time_step)
        self.norm = float(norm)
        self.max_norm = max_norm
        self.delta_norms = delta_norms
        self.step = step
        self.output = output
        self.index = None if index is None else tuple(int(i) for i in index)
        self.parameter = parameter
        self.batch_elements = tuple(batch_elements)
        self.verdict, self.norm64 = verdict, float(norm64)
        where = "" if step is None else f"at training step {step}, "
        if output != "delta":
            at = ", ".join(map(str, self.index or ()))
            what = (f"{output}, {_OUTPUTS[output]}, is non-finite at {output}[{at}] = "
                    f"{self.norm} although the backward signal delta stayed finite")
            if self.time_step >= 0:
                what += f" (time step t={self.time_step})"
            super().__init__(
                f"gradient overflow {where}in {what}.{self._blame()} The dtype's range was "
                "exceeded by a product or a sum. Use smaller inputs, weights or loss "
                "gradients, gradient clipping (rnn_backward(..., clip_delta=...)), or float64.")
            return
        where += f"at time step t={self.time_step}"
        if max_norm is not None and self.norm == self.norm and self.norm != float("inf"):
            what = f"||delta[t]|| = {self.norm:.6g} exceeded max_norm = {max_norm:.6g}"
        else:
            what = f"the backward signal delta[t] = dL/dh[t] became non-finite (norm {self.norm})"
        super().__init__(
            f"gradient overflow {where}: {what}.{self._blame()} Backpropagation through time "
            "multiplies diag(1 - h^2) W_hh once per step, so it grows geometrically when "
            "W_hh's singular values exceed 1. Try gradient clipping (rnn_backward(..., "
            "clip_delta=...) or clip_by_global_norm), a W_hh with a smaller spectral radius, "
            "or float64.")

    def _blame(self):
        """' Blame: W_hh, batch elements [3]; float64 says real (norm 1e+40).' or ''."""
        if self.parameter is None:
            return ""
        blame = f" Blame: {self.parameter}"
        if self.batch_elements:
            blame += f", batch elements {list(self.batch_elements)}"
        if self.verdict:
            blame += f"; float64 says {self.verdict} (norm {self.norm64:.4g})"
        return blame + "."


class DivergenceError(FloatingPointError):
    """Training gave up: the rollback policy saw max_retries consecutive failed steps."""
