"""Lesson: fixed convolution kernels applied to a real image.

A convolution slides a small kernel over the image; at each position it multiplies the kernel and
the patch under it element by element (a Hadamard product) and sums the result. Fixed kernels
already reveal structure: the Laplacian [[0,1,0],[1,-4,1],[0,1,0]] responds to edges and is 0
wherever the image is locally flat, a box blur averages, Sobel kernels measure horizontal and
vertical gradients. A CNN learns such kernels instead of being given them.

    fastnn lesson convolution --out lesson-convolution
"""
from __future__ import annotations

import numpy as np

from . import _util

KERNELS = {
    "Laplacian": np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32),
    "Box blur": np.full((3, 3), 1 / 9, np.float32),
    "Sobel x": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32),
    "Sobel y": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], np.float32),
}


def apply_kernels(image, kernels, padding=1):
    """Apply each (kH, kW) kernel to a (H, W) image with ``F.conv2d``: one output channel per kernel.

    Returns a float32 array (len(kernels), H + 2 padding - kH + 1, W + 2 padding - kW + 1).
    """
    import fastnn.functional as F

    weight = np.stack([np.asarray(k, np.float32) for k in kernels])[:, None]   # (K, 1, kH, kW)
    x = np.asarray(image, np.float32)[None, None]                              # (1, 1, H, W)
    return F.conv2d(x, weight, padding=padding).numpy()[0]


def correlate_by_hand(image, kernel, padding=1):
    """The same cross-correlation written as the two explicit loops of the definition:
    ``out[i, j] = sum_{u, v} image[i + u, j + v] * kernel[u, v]`` on the zero-padded image."""
    image = np.pad(np.asarray(image, np.float64), padding)
    kh, kw = kernel.shape
    out = np.zeros((image.shape[0] - kh + 1, image.shape[1] - kw + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.sum(image[i:i + kh, j:j + kw] * kernel)   # Hadamard product, then sum
    return out


def _show_kernel(ax, kernel, title, bound=4.0, cmap="coolwarm"):
    if cmap == "gray":
        ax.imshow(kernel, cmap="gray", vmin=0, vmax=max(1.0, kernel.max()))
    else:
        ax.imshow(kernel, cmap=cmap, vmin=-bound, vmax=bound)
    for (i, j), v in np.ndenumerate(kernel):
        light = cmap == "gray" and v < 0.5
        ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=10, color="white" if light else "black")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def _figure_filters(plt, image, source, outputs, magnitude):
    names = list(KERNELS)
    fig, axes = plt.subplots(2, len(names) + 1, figsize=(3.0 * (len(names) + 1), 6.8))
    axes[0, 0].imshow(image, cmap="gray")
    axes[0, 0].set_title(f"Input image\n{source}", fontsize=9)
    for j, name in enumerate(names, 1):
        _show_kernel(axes[0, j], KERNELS[name], f"{name} kernel")
    axes[1, 0].imshow(magnitude, cmap="magma")
    axes[1, 0].set_title("Edge strength\n$\\sqrt{G_x^2 + G_y^2}$ (Sobel)")
    for j, name in enumerate(names, 1):
        out = outputs[j - 1]
        if name == "Box blur":
            im = axes[1, j].imshow(out, cmap="gray")
        else:
            bound = max(abs(out).max(), 1e-6)
            im = axes[1, j].imshow(out, cmap="coolwarm", vmin=-bound, vmax=bound)
        axes[1, j].set_title(f"after {name}")
        fig.colorbar(im, ax=axes[1, j], fraction=0.046, pad=0.04)
    for ax in axes[:, 0]:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[1, 1:]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Fixed 3x3 kernels applied with fastnn.functional.conv2d (padding 1)")
    fig.tight_layout()
    return fig


def _figure_step(plt, image, kernel, row, col):
    """One output pixel: the patch, the kernel, their Hadamard product and its sum."""
    padded = np.pad(image, 1)
    patch = padded[row:row + 3, col:col + 3]
    product = patch * kernel
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.8))
    axes[0].imshow(image, cmap="gray")
    axes[0].add_patch(plt.Rectangle((col - 1.5, row - 1.5), 3, 3, fill=False, edgecolor="red", linewidth=2))
    axes[0].set_title(f"Image, 3x3 patch at ({row}, {col})")
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    _show_kernel(axes[1], patch, "Patch (pixel values)", cmap="gray")
    _show_kernel(axes[2], kernel, "⊙ Laplacian kernel")
    _show_kernel(axes[3], product, f"= product, sum = {product.sum():.3f}")
    fig.suptitle("One output pixel of the convolution: multiply element by element, then sum")
    fig.tight_layout()
    return fig


def run(out_dir, small=False, seed=0):
    """Apply the Laplacian, box-blur and Sobel kernels to a real image; write the figures.

    Returns ``{"image", "image_shape", "max_abs_error_vs_loops", "laplacian_constant_max_abs",
    "laplacian_mean_abs", "blur_mean_change", "seconds"}``.
    """
    plt = _util.pyplot()
    out_dir = _util.prepare(out_dir, seed)
    with _util.Timer() as timer:
        image, source = _util.sample_image(index=seed, prefer_fashion=not small)
        outputs = apply_kernels(image, list(KERNELS.values()))
        by_hand = np.stack([correlate_by_hand(image, k) for k in KERNELS.values()])
        error = float(np.max(np.abs(outputs - by_hand)))
        # the Laplacian of a constant image vanishes away from the zero padding
        flat = apply_kernels(np.full((8, 8), 0.7, np.float32), [KERNELS["Laplacian"]])[0]
        flat_interior = float(np.max(np.abs(flat[1:-1, 1:-1])))
        magnitude = np.hypot(outputs[2], outputs[3])
        # an interesting pixel for the step-by-step figure: the strongest Laplacian response
        row, col = np.unravel_index(np.argmax(np.abs(outputs[0])), outputs[0].shape)
        fig = _figure_filters(plt, image, source, outputs, magnitude)
        files = [_util.save(fig, out_dir, "convolution_kernels.png")]
        files.append(_util.save(_figure_step(plt, image, KERNELS["Laplacian"], int(row), int(col)), out_dir,
                                "convolution_step.png"))
    results = {
        "image": source,
        "image_shape": tuple(image.shape),
        "max_abs_error_vs_loops": error,
        "laplacian_constant_max_abs": flat_interior,
        "laplacian_mean_abs": float(np.mean(np.abs(outputs[0]))),
        "blur_mean_change": float(abs(outputs[1][1:-1, 1:-1].mean() - image[1:-1, 1:-1].mean())),
        "files": files,
        "seconds": timer.seconds,
    }
    _util.write_summary(out_dir, "Lesson: convolution with fixed kernels", [
        f"image: {source}, {image.shape[0]}x{image.shape[1]}",
        "kernels: " + ", ".join(KERNELS),
        f"F.conv2d vs the explicit double loop: max |difference| = {error:.2e}",
        f"Laplacian of a constant image, interior: max |value| = {flat_interior:.2e} (flat regions give 0)",
        f"Laplacian of the image: mean |value| = {results['laplacian_mean_abs']:.4f} (large on edges)",
        f"figures: {', '.join(f.rsplit('/', 1)[-1] for f in files)}",
        f"time: {timer.seconds:.1f} s",
    ])
    return results
