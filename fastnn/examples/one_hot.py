"""Lesson: one-hot encoding of labels and of words.

A network outputs numbers, so categories must become numbers too -- without inventing an order
("gecko" = 2 is not twice "frog" = 1). One-hot encoding gives each category its own axis: category
i of K becomes the vector of K zeros with a single 1 at position i. Every row then sums to 1,
two different categories are equally far apart, and ``argmax`` gives the index back.

``F.one_hot`` does it for class labels (the target of a softmax classifier) and, after giving
each word of a vocabulary an index, for the words of a sentence (the input of text models).

    fastnn lesson one-hot --out lesson-one-hot
"""
from __future__ import annotations

import re

import numpy as np

from . import _util

SENTENCE = "Un modèle est comme un robot qui a besoin d'apprendre des images pour être opérationnel"
REPTILES = ("salamandre", "gecko", "grenouille", "crocodile")   # the course's example classes
EXAMPLE_LABELS = (1, 3, 0, 1, 2, 0, 3, 2)


def tokenize(sentence):
    """Lower-case words; an elided article stays a token of its own ("d'apprendre" -> "d'", "apprendre")."""
    return re.findall(r"\w+'|\w+", sentence.lower())


def vocabulary(tokens):
    """Each distinct token with its index, in order of first appearance."""
    vocab = {}
    for t in tokens:
        vocab.setdefault(t, len(vocab))
    return vocab


def encode(indices, num_classes):
    """``F.one_hot`` of integer indices, as a NumPy int64 array (N, num_classes)."""
    import fastnn.functional as F

    return F.one_hot(np.asarray(indices, np.int64), num_classes).numpy()


def run(out_dir, small=False, seed=0, sentence=SENTENCE):
    """One-hot encode some class labels and the tokens of ``sentence``; print and plot the matrices.

    Returns ``{"labels", "label_matrix", "tokens", "vocabulary", "token_matrix", "rows_sum_to_one",
    "argmax_recovers", "seconds"}``.
    """
    plt = _util.pyplot()
    out_dir = _util.prepare(out_dir, seed)
    with _util.Timer() as timer:
        labels = np.array(EXAMPLE_LABELS[:6 if small else 8])
        label_matrix = encode(labels, len(REPTILES))
        tokens = tokenize(sentence)
        vocab = vocabulary(tokens)
        token_ids = np.array([vocab[t] for t in tokens])
        token_matrix = encode(token_ids, len(vocab))
        rows_ok = bool(np.all(label_matrix.sum(1) == 1) and np.all(token_matrix.sum(1) == 1))
        argmax_ok = bool(np.array_equal(label_matrix.argmax(1), labels)
                         and np.array_equal(token_matrix.argmax(1), token_ids))
        files = [_util.save(_figure(plt, labels, label_matrix, tokens, vocab, token_matrix), out_dir, "one_hot.png")]
    table = _text_table(tokens, vocab, token_matrix)
    _util.write_summary(out_dir, "Lesson: one-hot encoding", [
        f"classes: {', '.join(f'{i} = {name}' for i, name in enumerate(REPTILES))}",
        f"labels {labels.tolist()} -> F.one_hot(labels, {len(REPTILES)}):",
        *("  " + " ".join(map(str, row)) + f"   ({REPTILES[i]})" for row, i in zip(label_matrix, labels)),
        "",
        f"sentence: {sentence!r}",
        f"{len(tokens)} tokens, vocabulary of {len(vocab)} words (in order of first appearance)",
        table,
        "",
        f"every row sums to 1: {rows_ok}; argmax of each row gives the index back: {argmax_ok}",
        "", "figure: one_hot.png", f"time: {timer.seconds:.1f} s"])
    return {"labels": labels, "label_matrix": label_matrix, "tokens": tokens, "vocabulary": vocab,
            "token_matrix": token_matrix, "rows_sum_to_one": rows_ok, "argmax_recovers": argmax_ok, "files": files,
            "seconds": timer.seconds}


def _text_table(tokens, vocab, matrix):
    width = max(len(t) for t in tokens)
    header = " " * (width + 2) + " ".join(f"{i:>2}" for i in range(len(vocab)))
    rows = [f"{t:>{width}}  " + " ".join(f"{v:>2}" for v in row) for t, row in zip(tokens, matrix)]
    return "\n".join([header, *rows])


def _figure(plt, labels, label_matrix, tokens, vocab, token_matrix):
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap(["#f4f4f4", "#1f6fb4"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14.5, 7.2), gridspec_kw={"width_ratios": [1, 2.6]})
    ax1.imshow(label_matrix, cmap=cmap, vmin=0, vmax=1)
    ax1.set_xticks(range(len(REPTILES)), REPTILES, rotation=45, ha="right")
    ax1.set_yticks(range(len(labels)), [f"sample {i + 1}: {REPTILES[lab]} ({lab})" for i, lab in enumerate(labels)])
    ax1.set_xlabel("class (one column each)")
    ax1.set_title(f"Labels: F.one_hot(labels, {len(REPTILES)})")
    names = list(vocab)
    ax2.imshow(token_matrix, cmap=cmap, vmin=0, vmax=1)
    ax2.set_xticks(range(len(names)), [f"{i}: {w}" for i, w in enumerate(names)], rotation=60, ha="right")
    ax2.set_yticks(range(len(tokens)), [f"{i + 1}. {t}" for i, t in enumerate(tokens)])
    ax2.set_xlabel("vocabulary word (one column each)")
    ax2.set_ylabel("token of the sentence, in order")
    ax2.set_title(f"Words: F.one_hot(token indices, {len(names)}) -- \"un\" twice gives the same row twice")
    for ax, matrix in ((ax1, label_matrix), (ax2, token_matrix)):
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8, color="white" if v else "0.55")
        ax.set_xticks(np.arange(-0.5, matrix.shape[1]), minor=True)
        ax.set_yticks(np.arange(-0.5, matrix.shape[0]), minor=True)
        ax.grid(which="minor", color="white", linewidth=1.5)
        ax.tick_params(which="minor", length=0)
    fig.suptitle("One-hot encoding: one column per category, a single 1 per row")
    fig.tight_layout()
    return fig
