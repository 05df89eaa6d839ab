"""Invalid arguments raise a standard exception whose message names the argument and the value,
on both backends, before any compiled kernel runs (never a crash, never a silent wrong result)."""
import re

import numpy as np
import pytest

import fastnn
import fastnn.functional as F
from fastnn import nn

STANDARD = (ValueError, TypeError, IndexError, KeyError, RuntimeError)


def x4(*shape):
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def check_raises(fn, arg_regex, *values):
    """``fn()`` raises a standard exception naming the argument (regex) and each value (substring)."""
    with pytest.raises(STANDARD) as info:
        fn()
    msg = str(info.value)
    assert re.search(arg_regex, msg, re.IGNORECASE), f"message does not name {arg_regex!r}: {msg!r}"
    for v in values:
        assert str(v) in msg, f"message does not contain the value {v!r}: {msg!r}"
    return info.value


CASES = {
    # conv2d
    "conv_channel_mismatch": (lambda: F.conv2d(x4(1, 5, 8, 8), x4(4, 3, 3, 3)), r"channel", "5", "3"),
    "conv_kernel_larger_than_padded_input": (lambda: F.conv2d(x4(1, 3, 4, 4), x4(2, 3, 7, 7), padding=1),
                                              r"kernel", "7", "6"),
    "conv_dilated_kernel_larger_than_input": (lambda: F.conv2d(x4(1, 1, 5, 5), x4(1, 1, 3, 3), dilation=3),
                                               r"kernel|dilat", "7"),
    "conv_zero_stride": (lambda: F.conv2d(x4(1, 3, 8, 8), x4(2, 3, 3, 3), stride=0), r"stride", "0"),
    "conv_negative_stride": (lambda: F.conv2d(x4(1, 3, 8, 8), x4(2, 3, 3, 3), stride=-1), r"stride", "-1"),
    "conv_negative_stride_in_tuple": (lambda: F.conv2d(x4(1, 3, 8, 8), x4(2, 3, 3, 3), stride=(1, -2)),
                                      r"stride", "-2"),
    "conv_negative_padding": (lambda: F.conv2d(x4(1, 3, 8, 8), x4(2, 3, 3, 3), padding=-1), r"padding", "-1"),
    "conv_zero_dilation": (lambda: F.conv2d(x4(1, 3, 8, 8), x4(2, 3, 3, 3), dilation=0), r"dilation", "0"),
    "conv_groups_not_dividing": (lambda: F.conv2d(x4(1, 4, 8, 8), x4(6, 2, 3, 3), groups=3), r"groups", "3"),
    "conv_zero_groups": (lambda: F.conv2d(x4(1, 4, 8, 8), x4(6, 4, 3, 3), groups=0), r"groups", "0"),
    "conv_3d_input": (lambda: F.conv2d(x4(3, 8, 8), x4(2, 3, 3, 3)), r"input", "(3, 8, 8)"),
    "conv_2d_input": (lambda: F.conv2d(x4(8, 8), x4(2, 3, 3, 3)), r"input", "(8, 8)"),
    "conv_5d_input": (lambda: F.conv2d(x4(1, 1, 3, 8, 8), x4(2, 3, 3, 3)), r"input", "(1, 1, 3, 8, 8)"),
    "conv_3d_weight": (lambda: F.conv2d(x4(1, 3, 8, 8), x4(3, 3, 3)), r"weight", "(3, 3, 3)"),
    "conv_bias_shape": (lambda: F.conv2d(x4(1, 3, 8, 8), x4(2, 3, 3, 3), x4(3)), r"bias", "(3,)"),
    "conv_float_stride": (lambda: F.conv2d(x4(1, 3, 8, 8), x4(2, 3, 3, 3), stride=1.5), r"stride", "1.5"),
    # linear / matmul
    "linear_feature_mismatch": (lambda: F.linear(x4(2, 5), x4(3, 4)), r"feature", "5", "4"),
    "linear_scalar_input": (lambda: F.linear(np.float32(1.0), x4(3, 1)), r"input|dim", "scalar"),
    "linear_1d_weight": (lambda: F.linear(x4(2, 4), x4(4)), r"weight", "(4,)"),
    "linear_bias_shape": (lambda: F.linear(x4(2, 4), x4(3, 4), x4(4)), r"bias", "(4,)"),
    "matmul_shape_mismatch": (lambda: fastnn.tensor(x4(2, 3)) @ fastnn.tensor(x4(4, 5)), r"matmul|shape|align",
                              "(2, 3)", "(4, 5)"),
    "broadcast_mismatch_add": (lambda: fastnn.tensor(x4(2, 3)) + fastnn.tensor(x4(4)), r"broadcast|shape",
                               "(2, 3)", "(4,)"),
    "broadcast_mismatch_mul_numpy": (lambda: fastnn.tensor(x4(2, 3)) * x4(2, 2), r"broadcast|shape", "(2, 3)", "(2, 2)"),
    # pooling
    "max_pool_kernel_zero": (lambda: F.max_pool2d(x4(1, 1, 4, 4), 0), r"kernel", "0"),
    "avg_pool_kernel_zero": (lambda: F.avg_pool2d(x4(1, 1, 4, 4), 0), r"kernel", "0"),
    "max_pool_negative_kernel": (lambda: F.max_pool2d(x4(1, 1, 4, 4), -2), r"kernel", "-2"),
    "max_pool_stride_zero": (lambda: F.max_pool2d(x4(1, 1, 4, 4), 2, stride=0), r"stride", "0"),
    "max_pool_negative_padding": (lambda: F.max_pool2d(x4(1, 1, 4, 4), 2, padding=-1), r"padding", "-1"),
    "max_pool_padding_over_half_kernel": (lambda: F.max_pool2d(x4(1, 1, 4, 4), 2, padding=2), r"padding", "2"),
    "max_pool_kernel_larger_than_input": (lambda: F.max_pool2d(x4(1, 1, 3, 3), 5), r"kernel", "5"),
    "max_pool_3d_input": (lambda: F.max_pool2d(x4(3, 4, 4), 2), r"input", "(3, 4, 4)"),
    "avg_pool_3d_input": (lambda: F.avg_pool2d(x4(3, 4, 4), 2), r"input", "(3, 4, 4)"),
    # dropout
    "dropout_p_negative": (lambda: F.dropout(x4(3), -0.1, True), r"\bp\b", "-0.1"),
    "dropout_p_above_one": (lambda: F.dropout(x4(3), 1.5, True), r"\bp\b", "1.5"),
    "dropout_module_p_above_one": (lambda: nn.Dropout(1.5), r"\bp\b", "1.5"),
    # softmax
    "softmax_dim_out_of_range": (lambda: F.softmax(x4(2, 3), 2), r"dim", "2"),
    "log_softmax_dim_out_of_range": (lambda: F.log_softmax(x4(2, 3), -3), r"dim", "-3"),
    # batch_norm
    "batch_norm_running_mean_shape": (lambda: F.batch_norm(x4(4, 3), np.zeros(2, np.float32), np.ones(3, np.float32)),
                                      r"running_mean", "(2,)"),
    "batch_norm_weight_shape": (lambda: F.batch_norm(x4(4, 3), None, None, np.ones(4, np.float32), training=True),
                                r"weight", "(4,)"),
    "batch_norm_single_value_per_channel_in_training": (lambda: F.batch_norm(x4(1, 3), None, None, training=True),
                                                        r"value|batch|channel", "(1, 3)"),
    "batch_norm_2d_module_on_2d_input": (lambda: nn.BatchNorm2d(3)(x4(4, 3)), r"input|dim", "(4, 3)"),
    "batch_norm_channel_mismatch": (lambda: nn.BatchNorm2d(3)(x4(2, 4, 2, 2)), r"channel|running_mean|weight", "4"),
    # cross entropy
    "cross_entropy_target_out_of_range": (lambda: F.cross_entropy(x4(4, 3), np.array([0, 1, 5, 2])), r"target", "5"),
    "cross_entropy_target_negative": (lambda: F.cross_entropy(x4(4, 3), np.array([0, -1, 1, 2])), r"target", "-1"),
    "cross_entropy_float_target": (lambda: F.cross_entropy(x4(4, 3), np.array([0.0, 1.0, 2.0, 1.0])), r"target",
                                   "float"),
    "cross_entropy_batch_mismatch": (lambda: F.cross_entropy(x4(4, 3), np.array([0, 1, 2, 1, 0])), r"target|batch",
                                     "4", "5"),
    "cross_entropy_1d_logits": (lambda: F.cross_entropy(x4(3), np.array([1])), r"input|logits", "(3,)"),
    "cross_entropy_bad_reduction": (lambda: F.cross_entropy(x4(4, 3), np.array([0, 1, 2, 1]), reduction="avg"),
                                    r"reduction", "avg"),
    "cross_entropy_label_smoothing_above_one": (
        lambda: F.cross_entropy(x4(4, 3), np.array([0, 1, 2, 1]), label_smoothing=1.5), r"label_smoothing", "1.5"),
    "mse_bad_reduction": (lambda: F.mse_loss(x4(3), x4(3), reduction="average"), r"reduction", "average"),
    # tensors
    "tensor_of_strings": (lambda: fastnn.tensor(["a"]), r"data|numeric|dtype", "<U1"),
    "tensor_of_object_array": (lambda: fastnn.tensor(np.array([1, "a"], dtype=object)), r"data|numeric|dtype",
                               "object"),
    "tensor_ragged": (lambda: fastnn.tensor([[1.0, 2.0], [3.0]]), r"data|numeric|shape|sequence|inhomogeneous"),
    "tensor_of_none": (lambda: fastnn.tensor(None), r"data|numeric|dtype", "object"),
    "relu_of_object_array": (lambda: F.relu(np.array([1, None], dtype=object)), r"input|numeric|dtype", "object"),
    "conv_of_string_array": (lambda: F.conv2d(np.full((1, 1, 3, 3), "x"), x4(1, 1, 1, 1)), r"input|numeric|dtype",
                             "<U1"),
    "int_tensor_requires_grad": (lambda: fastnn.tensor([1, 2], requires_grad=True), r"grad|float", "int64"),
    "reshape_wrong_size": (lambda: fastnn.tensor(x4(2, 3)).reshape(4, 2), r"reshape|shape", "(2, 3)", "(4, 2)"),
    "index_out_of_range": (lambda: fastnn.tensor(x4(2, 3))[5], r"index", "5"),
    "cat_mismatched_shapes": (lambda: fastnn.cat([x4(2, 3), x4(2, 4)], dim=0), r"cat|shape", "(2, 3)", "(2, 4)"),
    "stack_mismatched_shapes": (lambda: fastnn.stack([x4(2, 3), x4(3, 2)]), r"stack|shape", "(2, 3)", "(3, 2)"),
    "cat_empty": (lambda: fastnn.cat([]), r"cat|empty|tensors"),
    # layer constructors
    "conv2d_module_groups": (lambda: nn.Conv2d(4, 6, 3, groups=4), r"groups", "4"),
    "conv2d_module_zero_stride": (lambda: nn.Conv2d(3, 4, 3, stride=0)(x4(1, 3, 8, 8)), r"stride", "0"),
    "linear_negative_features": (lambda: nn.Linear(-1, 3), r"in_features", "-1"),
    "maxpool_module_kernel_zero": (lambda: nn.MaxPool2d(0)(x4(1, 1, 4, 4)), r"kernel", "0"),
    "linear_module_feature_mismatch": (lambda: nn.Linear(4, 2)(x4(3, 5)), r"feature", "5", "4"),
}


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_raises_a_standard_error_naming_argument_and_value(case, backend_name):
    fn, arg_regex, *values = CASES[case]
    with fastnn.use_backend(backend_name):
        check_raises(fn, arg_regex, *values)


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
def test_bad_inputs_that_require_grad_raise_before_recording(backend_name):
    w = fastnn.tensor(x4(4, 3, 3, 3), requires_grad=True)
    with fastnn.use_backend(backend_name):
        check_raises(lambda: F.conv2d(x4(1, 5, 8, 8), w), r"channel", "5")
        ok = F.conv2d(x4(1, 3, 8, 8), w)
        ok.sum().backward()
    assert w.grad.shape == (4, 3, 3, 3)


def test_backward_on_non_scalar_without_grad_raises_runtime_error():
    y = fastnn.tensor(x4(2, 3), requires_grad=True) * 2.0
    check_raises(lambda: y.backward(), r"grad|scalar", "(2, 3)")


def test_backward_with_a_mis_shaped_grad_raises():
    y = fastnn.tensor(x4(2, 3), requires_grad=True) * 2.0
    check_raises(lambda: y.backward(np.ones((3, 2), np.float32)), r"grad|shape", "(3, 2)", "(2, 3)")


def test_mixed_float32_and_float64_conv_operands_raise_or_follow_torch_promotion():
    """torch raises for conv2d with mismatched input/weight dtypes; fastnn must not silently crash."""
    check_raises(lambda: F.conv2d(x4(1, 3, 8, 8), x4(2, 3, 3, 3).astype(np.float64)), r"dtype",
                 "float32", "float64")


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
def test_empty_batch_does_not_crash(backend_name):
    """torch accepts N=0 and returns empty outputs; fastnn must return the same or raise cleanly."""
    with fastnn.use_backend(backend_name):
        for fn, shape in [(lambda: F.conv2d(np.zeros((0, 3, 8, 8), np.float32), x4(2, 3, 3, 3)), (0, 2, 6, 6)),
                          (lambda: F.max_pool2d(np.zeros((0, 3, 8, 8), np.float32), 2), (0, 3, 4, 4)),
                          (lambda: F.linear(np.zeros((0, 4), np.float32), x4(3, 4)), (0, 3)),
                          (lambda: F.relu(np.zeros((0, 4), np.float32)), (0, 4))]:
            try:
                out = fn()
            except STANDARD:
                continue
            assert out.shape == shape


@pytest.mark.parametrize("backend_name", ["cpu", "reference"])
def test_nan_and_inf_inputs_propagate_without_crashing(backend_name):
    x = np.array([[np.nan, 1.0, np.inf], [0.0, -np.inf, 2.0]], np.float32)
    with fastnn.use_backend(backend_name), np.errstate(all="ignore"):
        assert np.isnan(F.relu(x).numpy()[0, 0])
        assert np.isnan(F.softmax(x, 1).numpy()[0]).all()
        out = F.cross_entropy(x, np.array([1, 2]), reduction="none").numpy()
        assert np.isnan(out[0])


def test_instance_norm_refuses_running_statistics_it_could_only_update_in_a_copy():
    x = np.ones((2, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match="instance_norm: running_mean must be a float32 or float64 array"):
        F.instance_norm(x, np.zeros(3, np.float16), np.ones(3, np.float32))
    with pytest.raises(ValueError, match="instance_norm: running_var must be a float32 or float64"):
        F.instance_norm(x, np.zeros(3, np.float32), [1.0, 1.0, 1.0])
