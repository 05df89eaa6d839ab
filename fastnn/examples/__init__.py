"""The course's lessons, one module each, run from the command line or from Python.

    fastnn lesson --list
    fastnn lesson playground --out lesson-playground            # figures + summary.txt in the folder
    fastnn lesson segmentation --out seg --small                # a quicker, smaller run
    fastnn lesson playground --out xor --set dataset=xor --set features=x1*x2 --set hidden=

From Python, every lesson module has ``run(out_dir, small=False, seed=0) -> dict`` returning the
numbers it reports:

    >>> from fastnn.examples import LESSONS
    >>> results = LESSONS["gradient-descent"].run("out/gd")
"""
from __future__ import annotations

import argparse
import ast
import os
import sys

from . import (
    convolution,
    embedding,
    features,
    gradient_descent,
    learning_rate,
    one_hot,
    overfitting,
    playground,
    segmentation,
)

LESSONS = {
    "convolution": convolution,
    "gradient-descent": gradient_descent,
    "learning-rate": learning_rate,
    "playground": playground,
    "overfitting": overfitting,
    "segmentation": segmentation,
    "embedding": embedding,
    "features": features,
    "one-hot": one_hot,
}


def describe(name):
    """The first line of a lesson's docstring."""
    doc = LESSONS[name].__doc__ or ""
    return doc.strip().splitlines()[0].removeprefix("Lesson: ") if doc.strip() else ""


def _parse_value(text):
    """``--set`` values: Python literals (numbers, tuples, ...) where they parse, else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def build_parser(prog="fastnn lesson"):
    parser = argparse.ArgumentParser(prog=prog, description="Run one of the course's lessons: it writes PNG figures "
                                     "and summary.txt into --out and prints the summary.")
    parser.add_argument("name", nargs="?", metavar="NAME", help="the lesson (see --list)")
    parser.add_argument("--list", action="store_true", help="list the lessons and exit")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: ./lesson-NAME)")
    parser.add_argument("--small", action="store_true", help="a smaller, quicker run (what the tests use)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a keyword argument of the lesson's run(), e.g. --set dataset=xor (repeatable)")
    return parser


def main(argv=None):
    """``fastnn lesson NAME --out DIR [--small] [--seed N] [--set KEY=VALUE ...]`` or ``fastnn lesson --list``.

    ``argv`` are the arguments after ``lesson`` (a leading ``"lesson"`` is skipped). Returns the exit status.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "lesson":
        argv = argv[1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list or args.name is None:
        width = max(map(len, LESSONS))
        print("Lessons (fastnn lesson NAME --out DIR [--small]):")
        for name in LESSONS:
            print(f"  {name:<{width}}  {describe(name)}")
        return 0 if args.list else 2
    if args.name not in LESSONS:
        print(f"fastnn lesson: unknown lesson {args.name!r}; expected one of: {', '.join(LESSONS)}", file=sys.stderr)
        return 2
    options = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            print(f"fastnn lesson: --set expects KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        options[key.strip()] = _parse_value(value.strip())
    out = args.out or f"lesson-{args.name}"
    try:
        LESSONS[args.name].run(out, small=args.small, seed=args.seed, **options)
    except (TypeError, ValueError) as exc:
        if not options:
            raise
        print(f"fastnn lesson {args.name}: {exc}", file=sys.stderr)
        return 2
    with open(os.path.join(out, "summary.txt"), encoding="utf-8") as f:
        print(f.read(), end="")
    print(f"(written to {os.path.abspath(out)})")
    return 0


__all__ = ["LESSONS", "describe", "main"]
