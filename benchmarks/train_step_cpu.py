"""Wall time and memory of ONE training step of a family's full-size recipe on the CPU (random weights).

What runs: the recipe a user runs, ``lightning fit --config zoo/<family>.yaml``, through the zoo's own LightningCLI
(:func:`zoo.cli.make_cli`), with the recipe's model and data sizes and only what makes it one CPU step::

    --trainer.accelerator=cpu --trainer.precision=32-true --trainer.max_steps=1 --trainer.limit_val_batches=0
    --trainer.num_sanity_val_steps=0 --trainer.logger=false --trainer.enable_checkpointing=false
    --trainer.callbacks=[] --trainer.enable_progress_bar=false

(no validation: the sampler's cost is measured by the ``*_sampling.py`` benchmarks). The step is timed from
Lightning's ``on_train_batch_start`` to ``on_train_batch_end`` (forward, backward, optimizer step; the data loading
of the batch is outside). Memory: the RSS once the system is built and the process's peak (``VmHWM``) at the end.

``--stateless-optimizer`` replaces the recipe's optimizer by ``torch.optim.SGD(lr=0)``, which keeps no state, for a
recipe whose AdamW moments do not fit in this machine's memory (DC-VSR trains all 1.5 G UNet parameters: weights,
gradients and two AdamW moments are 16 bytes a parameter). The step then times forward and backward; the AdamW
update it leaves out is an element-wise pass over the parameters (seconds), and the report says so.

The figures recorded here are what each family's ``FamilySpec.cpu_hint`` quotes in the one-line warning of a
full-size CPU run (:mod:`zoo.family`). One family per process (memory)::

    OMP_NUM_THREADS=2 python benchmarks/train_step_cpu.py sateco
    OMP_NUM_THREADS=2 python benchmarks/train_step_cpu.py dc_vsr --stateless-optimizer

Watch the memory: on this machine (23.5 GiB, no swap) DC-VSR's step was stopped at 22 GB and VideoGigaGAN's was
killed by the kernel's OOM killer at 25 GB; those rows of the report were written by hand from what was observed.

Results are merged into ``benchmarks/results/train_step_cpu.json`` (one entry per family, the command that made it)
and ``train_step_cpu.md`` is rendered from that JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "train_step_cpu.json"
ONE_CPU_STEP = ["--trainer.accelerator=cpu", "--trainer.precision=32-true", "--trainer.max_steps=1",
                "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0", "--trainer.logger=false",
                "--trainer.enable_checkpointing=false", "--trainer.callbacks=[]",
                "--trainer.enable_progress_bar=false"]


def _status_kib(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def _git_commit() -> str:
    import subprocess

    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def measure(family: str, *, stateless_optimizer: bool, extra: list[str]) -> dict:
    """One training step of ``zoo/<family>.yaml`` (+ ``extra`` CLI arguments) on the CPU; returns the result."""
    import lightning as L
    import torch

    from zoo.cli import make_cli

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    load_start = os.getloadavg()[0]
    args = ["--config", f"zoo/{family}.yaml", *extra, *ONE_CPU_STEP]
    t0 = time.perf_counter()
    cli = make_cli(args, run=False)
    build_s = time.perf_counter() - t0
    model = cli.model
    params = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    rss_built = _status_kib("VmRSS")
    if stateless_optimizer:
        def configure_optimizers() -> torch.optim.Optimizer:
            return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)

        model.configure_optimizers = configure_optimizers

    class StepTimer(L.Callback):
        start = end = None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
            self.start = time.perf_counter()
            self.shapes = {k: list(v.shape) for k, v in batch.items() if hasattr(v, "shape")}

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
            self.end = time.perf_counter()

    timer = StepTimer()
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(model, datamodule=cli.datamodule)
    if timer.end is None:
        raise SystemExit("no training step ran")
    return {
        "family": family,
        "recipe": f"zoo/{family}.yaml",
        "command": "OMP_NUM_THREADS={} python benchmarks/train_step_cpu.py {}".format(
            os.environ.get("OMP_NUM_THREADS", ""), shlex.join(sys.argv[1:])),
        "cli_arguments": args,
        "stateless_optimizer": stateless_optimizer,
        "step_s": round(timer.end - timer.start, 1),
        "build_s": round(build_s, 1),
        "batch_shapes": timer.shapes,
        "params": params,
        "trained_params": trained,
        "rss_built_mib": int(round(rss_built / 1024)),
        "peak_rss_mib": int(round(_status_kib("VmHWM") / 1024)),
        "peak_rss_method": "VmHWM of the whole process (build + step)",
        "ru_maxrss_mib": int(round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)),
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_avg_start": round(load_start, 2),
        "load_avg_end": round(os.getloadavg()[0], 2),
        "cpu": platform.processor() or platform.machine(),
        "nproc": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "commit": _git_commit(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def render(report: dict) -> str:
    """The markdown of ``train_step_cpu.json``."""
    lines = [
        "# One training step of each full-size recipe on the CPU (random weights)",
        "",
        "Written by `benchmarks/train_step_cpu.py` from `train_step_cpu.json` (every figure as stored). Each row is",
        "ONE step of the recipe a user runs (`zoo/<family>.yaml`, its model and data sizes) through the zoo's",
        "LightningCLI with `" + " ".join(ONE_CPU_STEP) + "`; the step is timed from `on_train_batch_start` to",
        "`on_train_batch_end` (forward, backward, optimizer step). Peak RSS: the process's `VmHWM` (build + step).",
        "These are the figures the one-line warning of a full-size CPU run quotes (`FamilySpec.cpu_hint`).",
        "",
        "| family | command | params (M) | trained (M) | batch | build (s) | step (s) | RSS built (MiB) "
        "| peak RSS (MiB) | threads | load start / end | commit | note |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for row in sorted(report["results"], key=lambda r: r["family"]):
        if "stopped" in row:  # a measurement stopped before the step ended: lower bounds, recorded by hand
            lines.append(f"| {row['family']} | `{row['command']}` | {row['params'] / 1e6:.1f} | "
                         f"{row['trained_params'] / 1e6:.1f} | — | — | "
                         f"{'> %s' % row['step_s_more_than'] if row['step_s_more_than'] is not None else 'OOM'} | — | "
                         f"> {row['peak_rss_mib_more_than']} | 2 | — | {row['commit']} | {row['stopped']} |")
            continue
        if "reported" in row:  # a figure reported elsewhere and recorded here by hand (not measured by this script)
            lines.append(f"| {row['family']} | `{row['command']}` | {row['params'] / 1e6:.1f} | — | — | — | "
                         f"{row['step_s']} | — | {row['peak_rss_mib']} | — | — | — | {row['reported']} |")
            continue
        batch = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in row["batch_shapes"].items())
        note = ("optimizer replaced by a stateless SGD(lr=0): the recipe's AdamW state does not fit in this machine's "
                "memory; the AdamW update is not timed") if row["stateless_optimizer"] else ""
        note = "; ".join(part for part in (note, row.get("note", "")) if part)
        lines.append(f"| {row['family']} | `{row['command']}` | {row['params'] / 1e6:.1f} | "
                     f"{row['trained_params'] / 1e6:.1f} | {batch} | {row['build_s']} | {row['step_s']} | "
                     f"{row['rss_built_mib']} | {row['peak_rss_mib']} | {row['threads']} (nproc {row['nproc']}) | "
                     f"{row['load_avg_start']} / {row['load_avg_end']} | {row['commit']} | {note} |")
    measured = [row for row in report["results"] if "reported" not in row and "stopped" not in row]
    if measured:
        lines += ["", f"Device: CPU ({measured[0]['cpu']}), torch {measured[0]['torch']}, fp32. "
                  "The machine's 2 cores may be shared with other jobs (the load columns)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("family", nargs="?", help="the recipe zoo/<family>.yaml")
    p.add_argument("--stateless-optimizer", action="store_true",
                   help="SGD(lr=0) instead of the recipe's optimizer (no optimizer state; see the module docstring)")
    p.add_argument("--note", default="", help="a few words stored with the result (e.g. where the data came from)")
    p.add_argument("--render", action="store_true", help="only re-render the markdown from the JSON")
    args, extra = p.parse_known_args(argv)
    if not args.render:
        if not args.family:
            p.error("a family is required")
        result = measure(args.family, stateless_optimizer=args.stateless_optimizer, extra=extra)
        if args.note:
            result["note"] = args.note
        report = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"results": []}
        report["results"] = [r for r in report["results"] if r["family"] != args.family] + [result]
        RESULTS.write_text(json.dumps(report, indent=1) + "\n")
        print(json.dumps(result))
    RESULTS.with_suffix(".md").write_text(render(json.loads(RESULTS.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
