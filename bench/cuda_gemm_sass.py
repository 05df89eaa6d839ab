"""What the float32 cuda GEMM costs per slab, in machine instructions, without a GPU: the GEMM of
a tfconvnet training step compiled for an H100 (sm_90) as the driver would (Numba and NVVM to
PTX, ``ptxas`` under the kernel's register cap), then disassembled (``nvdisasm``) and its k loop
counted.

    python bench/cuda_gemm_sass.py [--baseline REV] [--batch 256] [--kernel conv._im2col pool._max_pool ...]

For each variant (ta, tb, and B a windows operand or not) it reports registers, bytes spilled, the multiply block (the
innermost loop: its instructions and FFMAs, the share of FFMA in it) and the instructions of one
BK-deep slab: the slab loop's static instructions outside the multiply, plus the multiply times
the number of its turns per slab. The count outside the multiply includes both sides of every
branch (masked and unmasked reads, the row sums), so it bounds the instructions a thread issues
per slab from above. ``--kernel`` also lists the innermost loops of other kernels (instructions,
loads, stores). ``--baseline REV`` runs the same counts on the cuda backend (``fastnn/backends/cuda``)
of git revision REV, everything else as now, in the same run.

A static count is not a time: latency, occupancy and memory traffic decide that, and only a GPU
measures it (``bench/cuda_step_profile.py``, ``fastnn bench --device cuda``). It tells whether the
instructions a thread issues for its 256 FMAs per slab went down. Needs the ``cuda`` extra (its
``ptxas``) and NVIDIA's disassembler: ``pip install -e ".[cuda,cuda-sass]"`` (the
``nvidia-cuda-nvdisasm`` wheel), or nvdisasm on PATH.
"""
import argparse
import collections
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTRUCTION = re.compile(r"^\s*/\*[0-9a-f]+\*/\s+(.*?)\s*;")
LABEL = re.compile(r"^(\.L_x_\d+):")
BRANCH = re.compile(r"BRA `\((\.L_x_\d+)\)")
OPCODE = re.compile(r"(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)")


def _tool(name, package):
    """An NVIDIA tool from PATH or from its pip wheel (``nvidia/**/bin/name``), or None."""
    found = shutil.which(name)
    if found:
        return found
    spec = importlib.util.find_spec("nvidia")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for candidate in sorted(Path(folder).glob(f"**/bin/{name}")):
            if candidate.is_file():
                return str(candidate)
    sys.exit(f"cuda_gemm_sass: no {name}: pip install {package} (or put {name} on PATH)")


def _instructions(sass):
    """[(label or None, instruction)] of a disassembly, labels attached to the next instruction."""
    listing, label = [], None
    for line in sass.splitlines():
        found = LABEL.match(line)
        if found:
            label = found.group(1)
            continue
        found = INSTRUCTION.match(line)
        if found:
            listing.append((label, found.group(1)))
            label = None
    return listing


def _loops(listing):
    """(start, end) of every loop: a branch back to a label at or before it."""
    where = {label: i for i, (label, _) in enumerate(listing) if label}
    loops = []
    for i, (_, instruction) in enumerate(listing):
        target = BRANCH.search(instruction)
        if target and where.get(target.group(1), i + 1) <= i:
            loops.append((where[target.group(1)], i))
    return loops


def _ops(instructions):
    return collections.Counter(OPCODE.match(text).group(1) for text in instructions)


def count_slab(sass, fmas_per_slab):
    """The multiply block (the loop with the most FFMAs and no barrier, or, when the multiply is
    written out whole, the slab loop's own FFMAs) and the slab loop (the smallest loop with a barrier
    around the multiply, or with the most FFMAs) of a GEMM's disassembly."""
    listing = _instructions(sass)
    body = [text for _, text in listing]
    loops = _loops(listing)
    ffma = lambda lp: sum(t.startswith("FFMA") for t in body[lp[0]:lp[1] + 1])           # noqa: E731
    barrier = lambda lp: any("BAR.SYNC" in t for t in body[lp[0]:lp[1] + 1])             # noqa: E731
    inner = [lp for lp in loops if not barrier(lp) and ffma(lp)]
    multiply = max(inner, key=ffma) if inner else None
    if multiply is not None:
        slab = min((lp for lp in loops if lp[0] <= multiply[0] and multiply[1] <= lp[1] and barrier(lp)),
                   key=lambda lp: lp[1] - lp[0])
    else:           # the multiply written out in the slab loop: no loop of its own
        most = max(ffma(lp) for lp in loops if barrier(lp))
        slab = min((lp for lp in loops if barrier(lp) and ffma(lp) == most), key=lambda lp: lp[1] - lp[0])
        multiply = slab
    multiply_ops = _ops(body[multiply[0]:multiply[1] + 1])
    slab_ops = _ops(body[slab[0]:slab[1] + 1])
    multiply_size = sum(multiply_ops.values())
    if multiply == slab:
        per_slab = sum(slab_ops.values())
        multiply_size = multiply_ops["FFMA"] + multiply_ops["LDS"]     # the multiply's own instructions
    else:
        turns = fmas_per_slab / multiply_ops["FFMA"]
        per_slab = sum(slab_ops.values()) - multiply_size + turns * multiply_size
    return {"multiply": multiply_size, "multiply_ffma": multiply_ops["FFMA"],
            "ffma_share": multiply_ops["FFMA"] / multiply_size, "per_slab": round(per_slab),
            "slab_ffma_share": fmas_per_slab / per_slab, "fmas_per_slab": fmas_per_slab}


def _assemble(overload, max_registers, folder):
    """(ptxas -v's report, nvdisasm's listing) of a compiled overload, assembled for sm_90."""
    ptxas, nvdisasm = _tool("ptxas", "nvidia-cuda-nvcc-cu12"), _tool("nvdisasm", "nvidia-cuda-nvdisasm")
    ptx, cubin = Path(folder) / "kernel.ptx", Path(folder) / "kernel.cubin"
    ptx.write_text(overload.inspect_asm(cc=(9, 0)))
    cap = ["--maxrregcount", str(max_registers)] if max_registers else []
    assembled = subprocess.run([ptxas, "-v", "--gpu-name", "sm_90", *cap, str(ptx), "-o", str(cubin)],
                               capture_output=True, text=True, check=True).stderr
    return assembled, subprocess.run([nvdisasm, "-c", str(cubin)], capture_output=True, text=True, check=True).stdout


def _resources(assembled):
    return {"registers": int(re.search(r"Used (\d+) registers", assembled).group(1)),
            "spilled": sum(int(x) for x in re.findall(r"(\d+) bytes spill (?:stores|loads)", assembled))}


def measure(batch, kernels):
    """The counts for each compiled float32 GEMM variant of a tfconvnet step, and the innermost
    loops of each kernel named in ``kernels`` ("module.name" of fastnn.backends.cuda) (run in a
    process of its own: host_only patches numba-cuda)."""
    os.environ.pop("NUMBA_ENABLE_CUDASIM", None)
    import fastnn.backends.cuda.host_only as host_only
    host_only.install()
    import numpy as np
    from fastnn.backends.cuda import linear
    from fastnn.backends.cuda.report import training_step
    step = training_step("tfconvnet", batch)
    step()      # compiles every kernel of the step
    gemm_launches = []
    recorded_launch = linear.launch_grid

    def record(kernel, grid, block, *args):
        m, n, k, k_chunk = args[17:21]      # (the GEMM kernel's arguments: see linear.gemm)
        gemm_launches.append((kernel, grid, m, n, k, k_chunk))
        recorded_launch(kernel, grid, block, *args)
    linear.launch_grid = record
    step()      # a second step, its GEMM launches recorded
    linear.launch_grid = recorded_launch
    results, loops, variant_of = {}, {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for key, kernel in sorted(linear._KERNELS.items(), key=str):
            dtype, ta, tb = key[:3]
            windowed = len(key) > 3 and key[3]      # (revisions before implicit-GEMM convolution: 3-tuples)
            if dtype != np.float32:
                continue
            if len(key) > 4:        # per-GEMM tilings: the key's
                tiling = key[4]
                bm, bn, bk, tm, tn, registers = (tiling.BM, tiling.BN, tiling.BK, tiling.TM, tiling.TN,
                                                 tiling.registers)
            else:                   # (revisions with one tiling a process: the module's)
                bm, bn, bk, tm, tn, registers = (linear.BM, linear.BN, linear.BK, linear.TM, linear.TN,
                                                 linear.GEMM_MAX_REGISTERS)
            for overload in kernel.overloads.values():
                assembled, sass = _assemble(overload, registers, folder)
                name = f"ta={int(ta)} tb={int(tb)}{' windows' if windowed else ''} {bm}x{bn}x{bk}/{tm}x{tn}"
                results[name] = {**count_slab(sass, tm * tn * bk), **_resources(assembled),
                                 "instructions": len(_instructions(sass))}
                variant_of[id(kernel)] = (name, bm, bn, bk, (bm // tm) * (bn // tn))
        for name in kernels:
            module, attribute = name.rsplit(".", 1)
            kernel = getattr(importlib.import_module(f"fastnn.backends.cuda.{module}"), attribute)
            for i, overload in enumerate(kernel.overloads.values()):
                assembled, sass = _assemble(overload, None, folder)
                listing = _instructions(sass)
                body = [text for _, text in listing]
                innermost = sorted((lp for lp in _loops(listing) if lp[1] > lp[0]), key=lambda lp: lp[1] - lp[0])[:2]
                loops[f"{name} #{i}"] = {**_resources(assembled), "instructions": len(body), "innermost": [
                    {"instructions": b - a + 1, **{op: n for op, n in _ops(body[a:b + 1]).items()
                                                   if op in ("LDG", "STG", "FFMA", "FADD", "IMAD")}}
                    for a, b in innermost]}
    step_model = []
    for kernel, (grid_x, grid_y, splits), m, n, k, k_chunk in gemm_launches:
        if id(kernel) not in variant_of:        # a float64 GEMM (none in a float32 step)
            continue
        name, bm, bn, bk, nt = variant_of[id(kernel)]
        # the slab loop's turns a block takes, over its slice of k (the last slice may be shorter)
        slabs = sum(-(-min(k_chunk, k - z * k_chunk) // bk) for z in range(splits))
        row_tiles = -(-m // bm)     # (the grid's y extent, or fewer blocks each taking several row tiles)
        step_model.append({"variant": name, "m": m, "n": n, "k": k, "splits": splits,
                           "blocks": grid_x * grid_y * splits, "useful_fma": m * n * k,
                           "issued_fma": row_tiles * bm * grid_x * bn * slabs * bk,
                           "warp_instructions": row_tiles * grid_x * slabs * nt / 32 * results[name]["per_slab"]})
    print(json.dumps({"gemm": results, "kernels": loops, "step": step_model}))


def _run(batch, tree, kernels):
    env = dict(os.environ, PYTHONPATH=str(tree))
    run = subprocess.run([sys.executable, __file__, "--one", "--batch", str(batch), "--kernel", *kernels], env=env,
                         cwd=tree, capture_output=True, text=True)
    if run.returncode:
        sys.exit(f"cuda_gemm_sass: the count failed in {tree}:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def _baseline_tree(revision, folder):
    """A copy of this checkout's package with the cuda backend (``fastnn/backends/cuda``) of ``revision``."""
    shutil.copytree(ROOT / "fastnn", Path(folder) / "fastnn",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    backend = Path(folder) / "fastnn/backends/cuda"
    shutil.rmtree(backend)
    archive = subprocess.run(["git", "archive", revision, "fastnn/backends/cuda"], cwd=ROOT, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    return Path(folder)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--baseline", metavar="REV", help="also count the cuda backend of this git revision")
    parser.add_argument("--kernel", nargs="*", default=[], metavar="MODULE.NAME",
                        help="also list the innermost loops of these kernels (e.g. conv._im2col pool._max_pool)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        measure(args.batch, args.kernel)
        return
    runs = {"now": _run(args.batch, ROOT, args.kernel)}
    if args.baseline:
        with tempfile.TemporaryDirectory() as folder:
            runs[args.baseline] = _run(args.batch, _baseline_tree(args.baseline, folder), args.kernel)
    for name, found in runs.items():
        for kernel, c in found["kernels"].items():
            print(f"{name:>10} {kernel}: {c['registers']} registers, {c['spilled']} bytes spilled, "
                  f"{c['instructions']} instructions; innermost loops {c['innermost']}")
    print(f"float32 GEMM of a tfconvnet step (batch {args.batch}), sm_90, per thread; per slab: an upper bound "
          "(both sides of each branch)")
    steps = {name: found["step"] for name, found in runs.items()}
    runs = {name: found["gemm"] for name, found in runs.items()}
    for name, results in runs.items():
        for variant, c in results.items():
            print(f"{name:>10} {variant}: {c['registers']} registers, {c['spilled']} bytes spilled, "
                  f"{c['instructions']} instructions; multiply "
                  f"block {c['multiply']} instructions, {c['multiply_ffma']} FFMA ({c['ffma_share']:.0%}); "
                  f"per slab {c['per_slab']} instructions for {c['fmas_per_slab']} FFMA ({c['slab_ffma_share']:.0%})")
    for name, found in steps.items():
        print(f"{name:>10} the step's float32 GEMM launches (slab loops only; warp instructions = thread blocks x "
              "slabs x threads / 32 x instructions per slab):")
        for g in found:
            print(f"{'':>12}{g['variant']:<34} m={g['m']:<6} n={g['n']:<7} k={g['k']:<7} splits={g['splits']:<4} "
                  f"multiply-adds issued / useful {g['issued_fma'] / max(g['useful_fma'], 1):.2f}, "
                  f"{g['warp_instructions'] / 1e6:.1f} M warp instructions")
        print(f"{name:>10} total: {sum(g['useful_fma'] for g in found) / 1e9:.2f} G multiply-adds useful, "
              f"{sum(g['issued_fma'] for g in found) / 1e9:.2f} G issued, "
              f"{sum(g['warp_instructions'] for g in found) / 1e6:.0f} M warp instructions")
    if args.baseline:
        for variant in runs["now"]:
            if variant in runs[args.baseline]:
                print(f"{variant}: instructions per slab {runs[args.baseline][variant]['per_slab']} -> "
                      f"{runs['now'][variant]['per_slab']} "
                      f"({runs[args.baseline][variant]['per_slab'] / runs['now'][variant]['per_slab']:.2f}x fewer)")


if __name__ == "__main__":
    main()
