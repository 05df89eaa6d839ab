"""The course lessons (fastnn.examples): each one runs at its small size, writes its figures and
summary, and reports the numbers the lesson is about -- checked here against what the theory says."""
import os

import numpy as np
import pytest

from fastnn.examples import (
    LESSONS,
    convolution,
    embedding,
    features,
    gradient_descent,
    learning_rate,
    main,
    one_hot,
    overfitting,
    playground,
    segmentation,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_outputs(out_dir, result):
    """Every reported figure is a real PNG in out_dir, and summary.txt is there."""
    assert result["files"], "the lesson wrote no figure"
    for path in result["files"]:
        assert os.path.dirname(path) == str(out_dir)
        with open(path, "rb") as f:
            assert f.read(8) == PNG_MAGIC, path
        assert os.path.getsize(path) > 10_000, f"{path} is suspiciously small"
    with open(out_dir / "summary.txt", encoding="utf-8") as f:
        text = f.read()
    assert text.startswith("Lesson: ")
    return text


# -- 1. convolution ----------------------------------------------------------------------------

def test_laplacian_of_constant_image_vanishes_inside():
    out = convolution.apply_kernels(np.full((7, 9), 0.3, np.float32), [convolution.KERNELS["Laplacian"]])[0]
    assert out.shape == (7, 9)
    assert np.abs(out[1:-1, 1:-1]).max() < 1e-6
    # on the border the zero padding acts as a dark frame: -0.3 per missing neighbour
    assert out[0, 4] == pytest.approx(-0.3, abs=1e-6) and out[0, 0] == pytest.approx(-0.6, abs=1e-6)


def test_conv2d_is_the_hand_computed_correlation():
    image = np.random.default_rng(0).random((6, 5), dtype=np.float32)
    kernels = list(convolution.KERNELS.values())
    out = convolution.apply_kernels(image, kernels)
    for k, o in zip(kernels, out):
        np.testing.assert_allclose(o, convolution.correlate_by_hand(image, k), atol=1e-5)
    # one pixel by hand: 3x3 patch around (2, 2) times the Laplacian, summed
    p = image[1:4, 1:4]
    assert out[0, 2, 2] == pytest.approx(p[0, 1] + p[1, 0] + p[1, 2] + p[2, 1] - 4 * p[1, 1], abs=1e-5)
    # a correlation (not a flipped convolution): an impulse returns the kernel rotated by 180 degrees
    impulse = np.zeros((5, 5), np.float32)
    impulse[2, 2] = 1
    sobel = convolution.KERNELS["Sobel x"]
    response = convolution.apply_kernels(impulse, [sobel])[0]
    np.testing.assert_allclose(response[1:4, 1:4], sobel[::-1, ::-1], atol=1e-6)


def test_convolution_lesson(tmp_path):
    result = convolution.run(tmp_path, small=True)
    _check_outputs(tmp_path, result)
    assert result["max_abs_error_vs_loops"] < 1e-5
    assert result["laplacian_constant_max_abs"] < 1e-6
    assert result["laplacian_mean_abs"] > 0.05                         # a real image has edges
    assert result["image_shape"] == (8, 8)


# -- 2. gradient descent ------------------------------------------------------------------------

def test_gradient_descent_follows_the_closed_form():
    xs, losses = gradient_descent.descend(3.0, 0.1, 12)
    np.testing.assert_allclose(xs, 3.0 * 0.8 ** np.arange(13), rtol=1e-12)
    np.testing.assert_allclose(np.abs(xs[1:] / xs[:-1]), 0.8, rtol=1e-12)   # |x| shrinks by 0.8 per step
    np.testing.assert_allclose(losses, xs ** 2, rtol=1e-12)
    xs, _ = gradient_descent.descend(3.0, 0.5, 3)
    assert xs[1] == 0 and xs[-1] == 0                                  # lr 0.5: the minimum in one step
    xs, _ = gradient_descent.descend(3.0, 1.05, 20)
    assert np.all(np.abs(xs[1:]) > np.abs(xs[:-1]))                    # lr > 1: every step overshoots further
    assert np.all(np.sign(xs[1:]) == -np.sign(xs[:-1]))
    assert abs(xs[-1]) == pytest.approx(3.0 * 1.1 ** 20, rel=1e-9)


def test_gradient_descent_lesson(tmp_path):
    result = gradient_descent.run(tmp_path, small=True)
    _check_outputs(tmp_path, result)
    runs = result["runs"]
    assert result["max_error_vs_formula"] < 1e-12
    assert runs[0.01]["verdict"] == "too slow"
    assert runs[0.1]["verdict"] == "converges" and abs(runs[0.1]["final_x"]) < 0.05 * result["x0"]
    assert runs[0.9]["verdict"] == "converges (oscillating)"
    assert runs[1.05]["verdict"] == "diverges" and abs(runs[1.05]["final_x"]) > result["x0"]


# -- 3. learning rate ---------------------------------------------------------------------------

def test_learning_rate_lesson(tmp_path):
    result = learning_rate.run(tmp_path, small=True)
    text = _check_outputs(tmp_path, result)
    runs = result["runs"]
    tiny, good, huge = runs[1e-7], runs[0.1], runs[3.0]
    assert not tiny["diverged"] and abs(tiny["final_loss"] - tiny["initial_loss"]) < 0.01 * tiny["initial_loss"]
    assert tiny["verdict"] == "too slow"
    assert not good["diverged"] and good["final_loss"] < 0.5 * good["initial_loss"] and good["test_acc"] > 0.8
    assert huge["diverged"] and huge["verdict"] == "diverged"        # reported, not raised
    assert not np.isfinite(huge["final_loss"]) or huge["final_loss"] > 2 * huge["initial_loss"]
    assert "DIVERGED" in text
    assert result["best_lr"] is not None and 1e-2 <= result["best_lr"] <= 1.0


def test_learning_rate_divergence_is_caught_not_raised():
    x, y, xt, yt = learning_rate._util.digits_split()
    r = learning_rate.train_one(100.0, x[:200], y[:200], xt[:50], yt[:50], epochs=2)
    assert r["diverged"] and r["diverged_at"] == 1


# -- 4. playground ------------------------------------------------------------------------------

def test_playground_defaults_are_the_opening_screen():
    d = playground.DEFAULTS
    assert (d["dataset"], d["features"], d["hidden"], d["activation"]) == ("circle", ("x1", "x2"), (4, 2), "tanh")
    assert (d["lr"], d["batch_size"], d["ratio"], d["noise"], d["l1"], d["l2"]) == (0.03, 10, 0.5, 0.0, 0.0, 0.0)
    p_train, y_train, p_test, _y_test = playground.data()
    assert p_train.shape == (250, 2) and p_test.shape == (250, 2) and set(np.unique(y_train)) == {-1.0, 1.0}
    r = playground.train(epochs=0)
    # an untrained network outputs about 0 everywhere: loss about 0.5 (the site shows 0.528 / 0.539)
    assert 0.4 < r["train_loss"][0] < 0.65 and 0.4 < r["test_loss"][0] < 0.65


def test_playground_feature_crosses():
    points = np.array([[1.0, 2.0], [-0.5, 3.0]], np.float32)
    m = playground.feature_matrix(points, ["x1", "x2", "x1^2", "x2^2", "x1*x2", "sin(x1)", "sin(x2)"])
    np.testing.assert_allclose(m[1], [-0.5, 3.0, 0.25, 9.0, -1.5, np.sin(-0.5), np.sin(3.0)], rtol=1e-6)
    with pytest.raises(ValueError, match="features must be"):
        playground.train(features=("x3",))


def test_playground_gauss_is_easy():
    r = playground.train(dataset="gauss", epochs=20)
    assert r["test_acc"] >= 0.9


def test_playground_circle_needs_squares_or_hidden_layers():
    crosses = playground.train(dataset="circle", features=("x1^2", "x2^2"), hidden=(), epochs=15)
    assert crosses["test_acc"] >= 0.9                                   # a line in (x1², x2²): quick
    linear = playground.train(dataset="circle", features=("x1", "x2"), hidden=(), epochs=15)
    assert linear["test_acc"] < 0.75                                     # no line separates a circle
    xor = playground.train(dataset="xor", features="x1*x2", hidden="", epochs=15)
    assert xor["test_acc"] >= 0.9


def test_playground_l2_and_l1_shrink_weights():
    kwargs = {"dataset": "gauss", "features": ("x1", "x2", "x1^2", "x2^2"), "hidden": (4,), "epochs": 15, "lr": 0.03}
    plain = playground.train(**kwargs)
    l2 = playground.train(**kwargs, l2=0.03)
    l1 = playground.train(**kwargs, l1=0.01)
    assert l2["weight_norm"] < 0.8 * plain["weight_norm"]
    assert l1["weight_norm"] < plain["weight_norm"]
    assert l2["test_acc"] >= 0.9


def test_playground_lesson(tmp_path):
    result = playground.run(tmp_path, small=True, gallery=False)
    text = _check_outputs(tmp_path, result)
    assert len(result["files"]) == 2 and "circle" in text
    assert result["config"]["hidden"] == (4, 2)
    assert result["test_loss"] < result["initial_test_loss"]
    with pytest.raises(TypeError, match="unknown option"):
        playground.run(tmp_path, small=True, learning_rate=0.1)


# -- 5. over-fitting ----------------------------------------------------------------------------

def test_overfitting_lesson(tmp_path):
    result = overfitting.run(tmp_path, small=True)
    _check_outputs(tmp_path, result)
    small_net, large_net = (result["networks"][name] for name in overfitting.NETWORKS)
    assert large_net["parameters"] > 100 * small_net["parameters"]
    assert large_net["train_mse"] < small_net["train_mse"]              # fits the training points better
    assert large_net["gap"] > small_net["gap"]                          # and generalises worse
    assert large_net["train_mse"] < result["noise"] ** 2 < large_net["test_mse"]


# -- 6. segmentation ----------------------------------------------------------------------------

def test_shapes_data_and_iou():
    images, labels = segmentation.make_shapes(20, seed=3)
    assert images.shape == (20, 1, 32, 32) and images.dtype == np.float32
    assert labels.shape == (20, 32, 32) and set(np.unique(labels)) <= {0, 1, 2}
    assert (labels == 1).any() and (labels == 2).any()
    assert images[:, 0][labels > 0].mean() > images[:, 0][labels == 0].mean() + 0.3
    target = np.array([[0, 0, 1], [2, 2, 1]])
    pred = np.array([[0, 1, 1], [2, 0, 1]])
    # background: 1 shared of 3 pixels; square: 2 of 3; disc: 1 of 2
    np.testing.assert_allclose(segmentation.iou_per_class(pred, target), [1 / 3, 2 / 3, 1 / 2])


def test_segmentation_lesson(tmp_path):
    result = segmentation.run(tmp_path, small=True)
    _check_outputs(tmp_path, result)
    assert result["output_shape"] == (2, 3, 32, 32)
    assert result["mean_iou"] >= 0.6 and result["mean_iou"] > result["chance_mean_iou"] + 0.3
    assert result["iou"]["square"] > 0.4 and result["iou"]["disc"] > 0.4
    assert result["losses"][-1] < 0.5 * result["losses"][0]


# -- 7. embedding -------------------------------------------------------------------------------

def test_knn_and_triplets():
    train = np.array([[0.0, 0], [0.1, 0], [5, 5], [5.1, 5]])
    labels = np.array([0, 0, 1, 1])
    assert embedding.knn_accuracy(train, labels, np.array([[0.2, 0.1], [4.9, 5]]), np.array([0, 1]), k=1) == 1.0
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 4)
    anchors = np.arange(12)
    pos, neg = embedding.sample_triplets(y, anchors, rng)
    assert np.all(y[pos] == y[anchors]) and np.all(pos != anchors) and np.all(y[neg] != y[anchors])


def test_embedding_lesson(tmp_path):
    result = embedding.run(tmp_path, small=True)
    _check_outputs(tmp_path, result)
    assert result["knn_acc"] > result["random_knn_acc"] + 0.2
    assert result["losses"][-1] < result["losses"][0]


# -- 8. features --------------------------------------------------------------------------------

def test_features_lesson(tmp_path):
    result = features.run(tmp_path, small=True)
    text = _check_outputs(tmp_path, result)
    assert {os.path.basename(f) for f in result["files"]} == {"features_filters.png", "features_maps.png",
                                                               "features_training.png"}
    assert result["num_filters"] == result["out_channels"] == 6
    assert result["test_acc"] >= 0.6 and result["test_acc"] > result["initial_test_acc"] + 0.3
    assert f"{result['test_acc']:.3f}" in text


def test_feature_maps_shapes():
    from fastnn.models import lenet5

    maps = features.feature_maps(lenet5(image_size=8), np.zeros((1, 8, 8), np.float32))
    shapes = [m.shape for _, m in maps]
    assert shapes[0] == (6, 8, 8) and (16, 4, 4) in shapes


# -- 9. one-hot ---------------------------------------------------------------------------------

def test_one_hot_lesson(tmp_path):
    result = one_hot.run(tmp_path, small=True)
    _check_outputs(tmp_path, result)
    for matrix, index in ((result["label_matrix"], result["labels"]),
                          (result["token_matrix"], [result["vocabulary"][t] for t in result["tokens"]])):
        assert set(np.unique(matrix)) == {0, 1}
        np.testing.assert_array_equal(matrix.sum(1), 1)                # one 1 per row
        np.testing.assert_array_equal(matrix.argmax(1), index)          # argmax gives the index back
    assert result["rows_sum_to_one"] and result["argmax_recovers"]
    tokens, m = result["tokens"], result["token_matrix"]
    assert tokens[:2] == ["un", "modèle"] and "d'" in tokens and "apprendre" in tokens
    assert m.shape == (len(tokens), len(result["vocabulary"])) == (16, 15)
    first, second = [i for i, t in enumerate(tokens) if t == "un"]
    np.testing.assert_array_equal(m[first], m[second])                  # the same word, the same row


def test_one_hot_encode_is_the_identity_rows():
    np.testing.assert_array_equal(one_hot.encode([2, 0, 1], 3), np.eye(3, dtype=np.int64)[[2, 0, 1]])


# -- the command line ---------------------------------------------------------------------------

def test_lesson_registry_and_cli(tmp_path, capsys):
    assert list(LESSONS) == ["convolution", "gradient-descent", "learning-rate", "playground", "overfitting",
                             "segmentation", "embedding", "features", "one-hot"]
    assert all(callable(module.run) for module in LESSONS.values())
    assert main(["--list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in LESSONS)
    out = tmp_path / "oh"
    assert main(["lesson", "one-hot", "--out", str(out), "--small"]) == 0
    printed = capsys.readouterr().out
    assert "every row sums to 1: True" in printed and (out / "one_hot.png").is_file()
    assert main(["gradient-descent", "--out", str(tmp_path / "gd"), "--small", "--set", "x0=2.0"]) == 0
    assert "start x0 = 2.0" in capsys.readouterr().out
    assert main(["no-such-lesson"]) == 2
    assert "unknown lesson" in capsys.readouterr().err
    assert main(["one-hot", "--out", str(out), "--set", "bogus"]) == 2
