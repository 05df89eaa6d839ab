"""Test utilities that use only fastnn's public API.

- ``gradcheck(fn, *inputs)``: autograd gradients against central finite differences (float64).
- ``helper_test_op(torch_fn, fastnn_fn, inputs, ...)``: the same computation in PyTorch and
  fastnn; compares the forward value, the dtype and the gradient of every floating input.
- ``noncontiguous(a)`` / ``fortran(a)``: the same values in a view that is not C-contiguous.
"""
from __future__ import annotations

import numpy as np

import fastnn

# float32 parity with PyTorch: rtol 1e-4, atol 1e-5 scaled by the magnitude of the reference
# (sums of many float32 products lose absolute, not relative, precision near zero).
TOL = {np.dtype(np.float32): dict(rtol=1e-4, atol=1e-5),
       np.dtype(np.float64): dict(rtol=1e-9, atol=1e-11)}


def tol(dtype):
    return TOL[np.dtype(dtype)]


def assert_close(actual, expected, dtype=None, rtol=None, atol=None, err_msg=""):
    """assert_allclose with atol scaled by max(1, max|expected|)."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    t = tol(dtype if dtype is not None else expected.dtype if expected.dtype.kind == "f" else np.float64)
    rtol = t["rtol"] if rtol is None else rtol
    atol = t["atol"] if atol is None else atol
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    assert actual.shape == expected.shape, f"{err_msg}: shape {actual.shape} != expected {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, err_msg=err_msg)


def to_numpy(x):
    if isinstance(x, fastnn.Tensor):
        return x.numpy()
    if hasattr(x, "detach"):  # a torch tensor
        return x.detach().cpu().numpy()
    return np.asarray(x)


def noncontiguous(a: np.ndarray) -> np.ndarray:
    """A strided view (every other element of a larger buffer along the last axis) equal to ``a``."""
    a = np.asarray(a)
    if a.ndim == 0:
        return a
    buf = np.full(a.shape[:-1] + (2 * a.shape[-1],), np.nan, dtype=a.dtype)
    buf[..., ::2] = a
    view = buf[..., ::2]
    assert not view.flags.c_contiguous or a.size <= 1
    return view


def fortran(a: np.ndarray) -> np.ndarray:
    """A transposed-layout (Fortran-ordered) copy equal to ``a``."""
    view = np.asfortranarray(a)
    assert not view.flags.c_contiguous or a.ndim < 2 or min(a.shape) <= 1
    return view


def _is_float(a):
    return isinstance(a, np.ndarray) and a.dtype.kind == "f"


# --------------------------------------------------------------------------------------------
# gradcheck
# --------------------------------------------------------------------------------------------
def gradcheck(fn, *inputs, eps=1e-6, rtol=1e-5, atol=1e-7, seed=0, wrt=None, backend="reference"):
    """Check ``fn``'s autograd gradients against central finite differences.

    Args:
        fn: maps fastnn Tensors (one per entry of ``inputs``) to a Tensor.
        inputs: float64 ndarrays are differentiated; anything else (int targets, None, ints)
            is passed through unchanged.
        wrt: indices of the inputs to check (default: every float64 ndarray).
        backend: the fastnn backend that runs forward and backward.
    The scalar is ``sum(fn(*inputs) * R)`` with a fixed random R shaped like the output.
    """
    rng = np.random.default_rng(seed)
    wrt = [i for i, a in enumerate(inputs) if _is_float(a)] if wrt is None else list(wrt)
    for i in wrt:
        assert inputs[i].dtype == np.float64, f"gradcheck: input {i} must be float64, got {inputs[i].dtype}"
    with fastnn.use_backend(backend):
        leaves = [fastnn.tensor(a, requires_grad=(i in wrt)) if _is_float(a) else a
                  for i, a in enumerate(inputs)]
        out = fn(*leaves)
        assert isinstance(out, fastnn.Tensor), f"gradcheck: fn returned {type(out).__name__}"
        assert out.dtype == np.float64, f"gradcheck: float64 inputs gave a {out.dtype} output"
        assert out.requires_grad, "gradcheck: output does not require grad although its inputs do"
        projection = rng.standard_normal(out.shape)
        (out * fastnn.tensor(projection)).sum().backward()

        def objective(arrays):
            with fastnn.no_grad():
                ts = [fastnn.tensor(a) if _is_float(a) else a for a in arrays]
                return float(np.sum(fn(*ts).numpy() * projection))

        for i in wrt:
            leaf = leaves[i]
            assert leaf.grad is not None, f"gradcheck: input {i} got no gradient"
            assert isinstance(leaf.grad, fastnn.Tensor), f"gradcheck: .grad of input {i} is not a Tensor"
            analytic = leaf.grad.numpy()
            assert analytic.shape == inputs[i].shape, f"gradcheck: grad of input {i} has shape {analytic.shape}"
            numeric = np.zeros(inputs[i].shape, np.float64)
            arrays = [a.copy() if _is_float(a) else a for a in inputs]
            x = arrays[i]
            for idx in np.ndindex(x.shape):
                orig = x[idx]
                x[idx] = orig + eps
                f_plus = objective(arrays)
                x[idx] = orig - eps
                f_minus = objective(arrays)
                x[idx] = orig
                numeric[idx] = (f_plus - f_minus) / (2 * eps)
            np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol,
                                       err_msg=f"gradcheck: gradient of input {i} (shape {x.shape})")


# --------------------------------------------------------------------------------------------
# PyTorch parity
# --------------------------------------------------------------------------------------------
def helper_test_op(torch_fn, fastnn_fn, inputs, dtype=np.float32, backend="cpu", grad=True, seed=0,
                   rtol=None, atol=None, as_numpy=False, check_inputs_unchanged=True):
    """Run ``torch_fn`` and ``fastnn_fn`` on the same ``inputs`` and compare values and gradients.

    Args:
        inputs: ndarrays; floating ones are cast to ``dtype`` and get requires_grad (when ``grad``),
            integer ones (targets, indices) are passed as int64. Non-array entries pass through.
        as_numpy: hand fastnn the raw ndarrays (same memory layout as given) instead of Tensors;
            gradients are then not checked.
    Returns (fastnn output, torch output).
    """
    import torch

    rng = np.random.default_rng(seed)
    prepared = []
    for a in inputs:
        if _is_float(a):
            prepared.append(a.astype(dtype, copy=False) if a.dtype != dtype else a)
        elif isinstance(a, np.ndarray) and a.dtype.kind in "iu":
            prepared.append(a.astype(np.int64, copy=False))
        else:
            prepared.append(a)
    originals = [a.copy() if isinstance(a, np.ndarray) else None for a in prepared]
    want_grad = grad and not as_numpy

    t_in = [torch.tensor(np.array(a, order="C"), requires_grad=want_grad and _is_float(a))
            if isinstance(a, np.ndarray) else a for a in prepared]
    if as_numpy:
        f_in = prepared
    else:
        f_in = [fastnn.tensor(a, requires_grad=want_grad and _is_float(a)) if isinstance(a, np.ndarray) else a
                for a in prepared]

    with fastnn.use_backend(backend):
        f_out = fastnn_fn(*f_in)
    t_out = torch_fn(*t_in)

    assert isinstance(f_out, fastnn.Tensor), f"fastnn returned {type(f_out).__name__}, expected a Tensor"
    expected = t_out.detach().numpy()
    assert f_out.shape == tuple(expected.shape), f"forward shape {f_out.shape} != torch {tuple(expected.shape)}"
    assert f_out.dtype == expected.dtype, f"forward dtype {f_out.dtype} != torch {expected.dtype}"
    assert_close(f_out.numpy(), expected, dtype, rtol, atol, err_msg=f"forward ({backend}, {np.dtype(dtype)})")

    if want_grad and any(_is_float(a) for a in prepared):
        assert f_out.requires_grad, "output does not require grad although an input does"
        g = rng.standard_normal(expected.shape).astype(dtype)
        t_out.backward(torch.tensor(g))
        with fastnn.use_backend(backend):
            f_out.backward(g)
        for i, (a, ft, tt) in enumerate(zip(prepared, f_in, t_in)):
            if not _is_float(a):
                continue
            assert ft.grad is not None, f"input {i}: no gradient"
            assert isinstance(ft.grad, fastnn.Tensor), f"input {i}: .grad is {type(ft.grad).__name__}"
            assert ft.grad.dtype == dtype, f"input {i}: grad dtype {ft.grad.dtype} != {np.dtype(dtype)}"
            assert_close(ft.grad.numpy(), tt.grad.numpy(), dtype, rtol, atol,
                         err_msg=f"grad of input {i} ({backend}, {np.dtype(dtype)})")

    if check_inputs_unchanged:
        for i, (a, o) in enumerate(zip(prepared, originals)):
            if o is not None:
                np.testing.assert_array_equal(a, o, err_msg=f"input {i} was modified in place")
    return f_out, t_out


def torch_state_to_numpy(module):
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}
