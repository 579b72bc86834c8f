# cython: language_level=3
"""rnnx._updates: the optimizers' update rules, compiled, over all parameter arrays at once.

A training step updates a handful of small arrays; in numpy each rule is several array
expressions per array, each costing more in call overhead than in arithmetic. Here one
call updates them all, with the formulas rnnx.optim.optimizers documents in numpy's order of
operations (and no fused multiply-adds), so float32 and float64 round as numpy would.

Every update is checked before it is written: a first pass computes every new value and
stops at the first group with one that is not finite; only if there is none does the
second pass write. So an update that would make a weight or a state entry NaN or inf
changes nothing, and the caller learns which array would have failed.

Arrays are C-contiguous; within one (param, grad, state...) group of one dtype, float32 or
float64, and one length (groups may differ). rnnx.optim.optimizers validates and converts.
"""
from cpython.buffer cimport PyBuffer_Release
from libc.math cimport sqrt, isfinite
from libc.stdlib cimport calloc, free
from cython cimport floating

from _buffers cimport take_floats

cdef enum Rule:
    SGD            # s1: the momentum buffer (NULL without momentum)
    ADAM           # s1, s2: exp_avg, exp_avg_sq
    RMSPROP        # s1: square_avg
    ADAGRAD        # s1: sum

# The scalars of the rules, each one the Python float numpy would see, so that its cast to
# float32 rounds as numpy's does ((1 - beta) is rounded once, not computed in float32).
cdef struct Hyper:
    double scale        # every gradient is multiplied by it first (clipping)
    double lr           # Adam: the bias-corrected step size lr / (1 - beta1^t)
    double momentum
    double beta1c       # 1 - beta1
    double beta2, beta2c        # beta2 and 1 - beta2 (RMSprop: alpha and 1 - alpha)
    double bias2        # sqrt(1 - beta2^t)
    double eps
    bint nesterov

# One (param, grad, state...) group: its arrays' buffers, all of n entries of one dtype.
cdef struct Group:
    void *p
    const void *g
    void *s1            # NULL when the rule keeps no (first/second) state
    void *s2
    Py_ssize_t n
    bint single         # float32 (else float64)


cdef inline bint _rule(Rule rule, floating *p, const floating *g, floating *s1, floating *s2,
                       Py_ssize_t n, const Hyper *hp, bint write) noexcept nogil:
    """One group's update. write=False writes nothing and returns whether any new param or
    state entry is non-finite; write=True writes every new value.

    g enters every rule as g * scale (numpy's rounding of a clipped gradient). One loop
    per rule with no early exit, so that the compiler can vectorise it."""
    cdef Py_ssize_t i
    cdef floating lr = <floating> hp.lr, mu = <floating> hp.momentum, eps = <floating> hp.eps
    cdef floating b1c = <floating> hp.beta1c, b2 = <floating> hp.beta2
    cdef floating b2c = <floating> hp.beta2c, bias2 = <floating> hp.bias2
    cdef floating gs = <floating> hp.scale, new_p, new_1, new_2, gi
    cdef bint bad = False
    if rule == SGD and s1 == NULL:
        for i in range(n):
            gi = g[i] * gs
            # p := p - lr g
            new_p = p[i] - lr * gi
            if write:
                p[i] = new_p
            else:
                bad |= not isfinite(new_p)
    elif rule == SGD:
        for i in range(n):
            gi = g[i] * gs
            # buf := buf * momentum + g;  p := p - lr buf, or p - lr (g + momentum buf)
            new_1 = s1[i] * mu + gi
            new_p = p[i] - lr * (gi + mu * new_1 if hp.nesterov else new_1)
            if write:
                p[i], s1[i] = new_p, new_1
            else:
                bad |= not (isfinite(new_p) and isfinite(new_1))
    elif rule == ADAM:
        for i in range(n):
            gi = g[i] * gs
            # m := m + (1 - b1) (g - m);  v := v b2 + (1 - b2) g g
            # p := p - step m / (sqrt(v) / sqrt(1 - b2^t) + eps)
            new_1 = s1[i] + b1c * (gi - s1[i])
            new_2 = s2[i] * b2 + (b2c * gi) * gi
            new_p = p[i] - lr * (new_1 / (<floating> sqrt(new_2) / bias2 + eps))
            if write:
                p[i], s1[i], s2[i] = new_p, new_1, new_2
            else:
                bad |= not (isfinite(new_p) and isfinite(new_1) and isfinite(new_2))
    elif rule == RMSPROP:
        for i in range(n):
            gi = g[i] * gs
            # v := v alpha + (1 - alpha) g g;  p := p - lr g / (sqrt(v) + eps)
            new_1 = s1[i] * b2 + (b2c * gi) * gi
            new_p = p[i] - lr * (gi / (<floating> sqrt(new_1) + eps))
            if write:
                p[i], s1[i] = new_p, new_1
            else:
                bad |= not (isfinite(new_p) and isfinite(new_1))
    else:
        for i in range(n):
            gi = g[i] * gs
            # s := s + g g;  p := p - lr g / (sqrt(s) + eps)
            new_1 = s1[i] + gi * gi
            new_p = p[i] - lr * (gi / (<floating> sqrt(new_1) + eps))
            if write:
                p[i], s1[i] = new_p, new_1
            else:
                bad |= not (isfinite(new_p) and isfinite(new_1))
    return bad


cdef bint _group(Rule rule, const Group *gr, const Hyper *hp, bint write) noexcept nogil:
    """_rule on one group, in its dtype."""
    if gr.single:
        return _rule(rule, <float *> gr.p, <const float *> gr.g, <float *> gr.s1,
                     <float *> gr.s2, gr.n, hp, write)
    return _rule(rule, <double *> gr.p, <const double *> gr.g, <double *> gr.s1,
                 <double *> gr.s2, gr.n, hp, write)


cdef Py_ssize_t _apply(Rule rule, list groups, Hyper hp, int n_state) except -2:
    """Check every group, then write them all: -1, or the index of the first group whose
    update is non-finite (then nothing was written).

    Each group is a tuple (param, grad, *state) of n_state state arrays; the buffers are
    taken once (C-contiguous, float32 or float64, one dtype and length per group, all but
    the grad writeable) and the two passes run on them without the GIL.
    """
    cdef Py_ssize_t n_groups = len(groups), n_arrays = 2 + n_state, k, j, taken = 0
    cdef Py_ssize_t bad = -1
    cdef Py_buffer *views = <Py_buffer *> calloc(n_groups * n_arrays, sizeof(Py_buffer))
    cdef Group *gs = <Group *> calloc(n_groups, sizeof(Group))
    cdef Py_buffer *v
    cdef void *ptrs[4]
    if views == NULL or gs == NULL:
        free(views)
        free(gs)
        raise MemoryError()
    try:
        for k in range(n_groups):
            group = groups[k]
            if len(group) != n_arrays:
                raise ValueError(f"update group {k} must hold {n_arrays} arrays (param, grad "
                                 f"and {n_state} state); got {len(group)}")
            for j in range(n_arrays):
                v = &views[k * n_arrays + j]
                take_floats(group[j], v, j != 1)
                taken += 1
                if v.itemsize != views[k * n_arrays].itemsize or (
                        v.len != views[k * n_arrays].len):
                    raise ValueError(f"update group {k}: array {j} must have the dtype and "
                                     "size of the param (array 0)")
                ptrs[j] = v.buf
            gs[k].p, gs[k].g = ptrs[0], ptrs[1]
            gs[k].s1 = ptrs[2] if n_state > 0 else NULL
            gs[k].s2 = ptrs[3] if n_state > 1 else NULL
            gs[k].n = views[k * n_arrays].len // views[k * n_arrays].itemsize
            gs[k].single = views[k * n_arrays].itemsize == 4
        with nogil:
            for k in range(n_groups):
                if _group(rule, &gs[k], &hp, False):
                    bad = k
                    break
            if bad < 0:
                for k in range(n_groups):
                    _group(rule, &gs[k], &hp, True)
    finally:
        for k in range(taken):
            PyBuffer_Release(&views[k])
        free(views)
        free(gs)
    return bad


def sgd(list groups, double scale, double lr, double momentum, bint nesterov):
    """groups of (param, grad), or (param, grad, momentum_buffer) with momentum (a zero
    buffer is a fresh one: its first step sets it to g, as torch does)."""
    return _apply(SGD, groups, Hyper(scale=scale, lr=lr, momentum=momentum, beta1c=0,
                                     beta2=0, beta2c=0, bias2=1, eps=0, nesterov=nesterov),
                  momentum != 0)


def adam(list groups, double scale, double step_size, double beta1, double beta2,
         double bias2, double eps):
    """groups of (param, grad, exp_avg, exp_avg_sq); step_size = lr / (1 - beta1^t),
    bias2 = sqrt(1 - beta2^t)."""
    return _apply(ADAM, groups, Hyper(scale=scale, lr=step_size, momentum=0, beta1c=1 - beta1,
                                      beta2=beta2, beta2c=1 - beta2, bias2=bias2, eps=eps,
                                      nesterov=False), 2)


def rmsprop(list groups, double scale, double lr, double alpha, double eps):
    """groups of (param, grad, square_avg)."""
    return _apply(RMSPROP, groups, Hyper(scale=scale, lr=lr, momentum=0, beta1c=0,
                                         beta2=alpha, beta2c=1 - alpha, bias2=1, eps=eps,
                                         nesterov=False), 1)


def adagrad(list groups, double scale, double lr, double eps):
    """groups of (param, grad, sum)."""
    return _apply(ADAGRAD, groups, Hyper(scale=scale, lr=lr, momentum=0, beta1c=0, beta2=0,
                                         beta2c=0, bias2=1, eps=eps, nesterov=False), 1)
