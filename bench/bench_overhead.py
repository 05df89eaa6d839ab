"""Per-op Python overhead of the autograd/dispatch path: ops on tiny tensors, where the arithmetic
is nothing and the time is what fastnn (or PyTorch) spends around each kernel.

    pytest bench/bench_overhead.py --benchmark-columns=median --benchmark-group-by=func
"""
import numpy as np
import pytest

import fastnn
import fastnn.functional as F

ENGINES = ["fastnn", "torch"]


def _tensors(engine):
    if engine == "torch":
        torch = pytest.importorskip("torch")
        torch.set_num_threads(fastnn.get_num_threads())
        return (torch, torch.rand(4, requires_grad=True), torch.nn.Linear(4, 4), torch.rand(2, 4))
    x = fastnn.tensor(np.random.rand(4).astype(np.float32), requires_grad=True)
    return (None, x, fastnn.nn.Linear(4, 4), fastnn.tensor(np.random.rand(2, 4).astype(np.float32)))


@pytest.mark.parametrize("engine", ENGINES)
def test_relu_forward_of_a_4_element_tensor_requiring_grad(benchmark, engine):
    torch, x, _, _ = _tensors(engine)
    relu = torch.relu if torch else F.relu
    benchmark(relu, x)


@pytest.mark.parametrize("engine", ENGINES)
def test_add_of_two_4_element_tensors(benchmark, engine):
    _, x, _, _ = _tensors(engine)
    benchmark(lambda: x + x)


@pytest.mark.parametrize("engine", ENGINES)
def test_relu_sum_backward_of_a_4_element_tensor(benchmark, engine):
    """Three ops (relu, sum, the backward pass with leaf accumulation)."""
    torch, x, _, _ = _tensors(engine)
    relu = torch.relu if torch else F.relu

    def step():
        x.grad = None
        relu(x).sum().backward()

    benchmark(step)


@pytest.mark.parametrize("engine", ENGINES)
def test_linear_4x4_forward_on_2_samples(benchmark, engine):
    _, _, linear, xb = _tensors(engine)
    benchmark(linear, xb)
