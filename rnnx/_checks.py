"""Argument checking, shared by every module: every check runs before any work is done, and
each error names the argument, what it got and what it expects."""
import math
import numbers

import numpy as np

from . import _reductions


def compute_dtype(x):
    """float32 and float64 x keep their dtype; every other real x computes in float64."""
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        try:
            dtype = np.asarray(x).dtype
        except Exception:  # a ragged list: float_array then raises a TypeError naming x
            return np.dtype(np.float64)
    return np.dtype(dtype) if dtype in (np.float32, np.float64) else np.dtype(np.float64)


def _as_wanted(value, dtype, shape):
    """Whether value is already a non-empty C-contiguous ndarray of dtype and shape (shape as
    in float_array), which needs no conversion."""
    return (type(value) is np.ndarray and value.dtype == dtype and value.flags.c_contiguous
            and value.size > 0 and (value.shape == shape or (
                value.ndim == len(shape) and all(got == want or isinstance(want, str)
                                                 for got, want in zip(value.shape, shape)))))


def float_array(name, value, dtype, shape):
    """value as a C-contiguous, finite array of dtype with the expected shape.

    shape holds ints and symbolic names (str); names never mismatch. Raises TypeError for a
    non-numeric value and ValueError for a wrong shape, an empty dimension or NaN/inf.
    """
    # The common case, an array already as wanted, costs one scan: training checks every
    # weight on every step.
    if _as_wanted(value, dtype, shape) and _reductions.first_nonfinite([value]) < 0:
        return value
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and other non-arrays
        raise TypeError(f"{name} must be a real numeric array of shape {_shape(shape)}; "
                        f"got {type(value).__name__} ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array of shape {_shape(shape)}; "
                        f"got dtype {arr.dtype}")
    if arr.ndim != len(shape):
        raise ValueError(f"{name} must be {len(shape)}-D with shape {_shape(shape)}; "
                         f"got {arr.ndim}-D shape {arr.shape}")
    if 0 in arr.shape:
        raise ValueError(f"{name} must not have an empty dimension; got shape {arr.shape}, "
                         f"expected {_shape(shape)}")
    for got, want in zip(arr.shape, shape):
        if got != want and not isinstance(want, str):
            raise ValueError(f"{name} must have shape {_shape(shape)}; got {arr.shape}")
    with np.errstate(over="ignore"):  # a cast that overflows is reported below, by name
        converted = np.ascontiguousarray(arr, dtype=dtype)
    if _reductions.first_nonfinite([converted]) >= 0:
        bad = ~np.isfinite(converted)
        first = tuple(int(i) for i in np.unravel_index(np.flatnonzero(bad)[0], arr.shape))
        if np.isfinite(arr[first]):
            if dtype == np.float64:          # a longdouble beyond float64's range
                raise ValueError(
                    f"{name} has a value that does not fit float64, the widest dtype rnnx "
                    f"computes in (first at index {first}: {arr[first]!r}; float64 ends at "
                    f"{np.finfo(np.float64).max:.4g}): scale it down")
            raise ValueError(f"{name} has values too large for {dtype} (first at index {first}: "
                             f"{arr[first]!r}); pass x as float64 to compute in float64")
        raise ValueError(f"{name} contains NaN or inf (first at index {first}); "
                         "all inputs must be finite")
    return converted


def tanh_output(name, value, dtype, shape):
    """float_array(name, value, dtype, shape) whose every entry is in [-1, 1], as a tanh's
    output (such as rnn_forward's h) is; ValueError naming the first entry outside."""
    # an array already as wanted is scanned once: outside [-1, 1] includes NaN and inf
    arr = value if _as_wanted(value, dtype, shape) else float_array(name, value, dtype, shape)
    i = _reductions.first_outside_unit(arr)
    if i >= 0:
        at = tuple(int(k) for k in np.unravel_index(i, arr.shape))
        raise ValueError(f"{name} must be rnn_forward's output, a tanh with every entry in "
                         f"[-1, 1]; got {name}[{', '.join(map(str, at))}] = {arr[at]!r}")
    return arr


def _shape(shape):
    """("T", "B", 3) -> "(T, B, 3)", (5,) -> "(5,)": the expected shape for messages."""
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def all_finite(a):
    """True when no entry of a is NaN or inf (counted by the compiled core for float arrays,
    which allocates nothing: this runs on every gradient of every training step)."""
    a = np.asarray(a)
    if a.dtype == np.float32 or a.dtype == np.float64:
        return _reductions.first_nonfinite([np.ascontiguousarray(a)]) < 0
    return bool(np.isfinite(a).all())


def positive_or_none(name, value):
    """None, or value as a positive finite float; a non-number is a TypeError (the core's
    thresholds, checked like numpy's arguments)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        raise TypeError(f"{name} must be a positive number or None; got {value!r}")
    return positive(name, value, none=True)


def positive(name, value, *, none=False, zero=False):
    """value as a finite float > 0 (>= 0 with zero=True); None passes through with none."""
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            math.isfinite(value) and (value >= 0 if zero else value > 0)):
        what = "a finite number >= 0" if zero else "a positive finite number"
        raise ValueError(f"{name} must be {what}{' or None' if none else ''}; got {value!r}")
    return float(value)


def whole_number(name, value, *, low=1, none=False):
    """value as an int >= low; None passes through with none."""
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        what = "a positive int" if low == 1 else f"an int >= {low}"
        raise ValueError(f"{name} must be {what}{' or None' if none else ''}; got {value!r}")
    return int(value)


FLOAT_DTYPES = ("float32", "float64")     # the dtypes the compiled core computes in


def float_dtype(dtype, name="dtype"):
    """np.float32 or np.float64 from anything np.dtype understands."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.float32, np.float64):
        raise ValueError(f"{name} must be 'float32' or 'float64'; got {dtype!r}")
    return dt


def generator(rng, name="rng"):
    """A numpy Generator from a Generator, an int seed or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, numbers.Integral) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError(f"{name} must be a numpy Generator, an int seed or None; got {rng!r}")


def choice(name, value, choices):
    """value if it is one of choices."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}; got {value!r}")
    return value


def number_in(name, value, low, high, *, closed="low"):
    """value as a float in the interval from low to high; closed: which ends belong to it,
    "low" [low, high), "high" (low, high], "both" [low, high] or "neither" (low, high)."""
    left, right = closed in ("low", "both"), closed in ("high", "both")
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            (low <= value if left else low < value) and (value <= high if right else
                                                          value < high)):
        interval = f"{'[' if left else '('}{low:g}, {high:g}{']' if right else ')'}"
        raise ValueError(f"{name} must be a number in {interval}; got {value!r}")
    return float(value)


def open_unit_interval(name, value):
    """value as a float in (0, 1)."""
    return number_in(name, value, 0, 1, closed="neither")


def seed(value, name="seed"):
    """value if it is an int, a numpy Generator or None."""
    if value is not None and (isinstance(value, bool) or not isinstance(
            value, (numbers.Integral, np.random.Generator))):
        raise TypeError(f"{name} must be an int, a numpy Generator or None; got {value!r}")
    return value


def instance(name, value, types, expected, *, none=False):
    """value if it is an instance of types (or None with none), else a TypeError saying
    what was expected."""
    if not (isinstance(value, types) or (none and value is None)):
        raise TypeError(f"{name} must be {expected}{' or None' if none else ''}; got "
                        f"{type(value).__name__}")
    return value
