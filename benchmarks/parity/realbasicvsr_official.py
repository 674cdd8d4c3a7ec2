"""Record the outputs of the official RealBasicVSR networks for ``tests/test_realbasicvsr_parity.py``.

Official code: mmediting 0.x, open-mmlab/mmediting (now open-mmlab/mmagic) branch ``0.x`` at commit
6f2f3ae2ad3e365f94bbf19c01a1d1056dad3895 (2023-04-06, ``mmedit.__version__ == '0.16.1'``). The network files are
used unmodified (their SHA-256 are checked against :data:`OFFICIAL_SHA256`):

- ``mmedit/models/backbones/sr_backbones/real_basicvsr_net.py`` (``RealBasicVSRNet``)
- ``mmedit/models/backbones/sr_backbones/basicvsr_net.py`` (``BasicVSRNet``, ``SPyNet``, ``ResidualBlocksWithInputConv``)
- ``mmedit/models/common/flow_warp.py``, ``upsample.py`` (``PixelShufflePack``), ``sr_backbone_utils.py``
  (``ResidualBlockNoBN``, ``make_layer``)
- ``mmedit/models/components/discriminators/unet_disc.py`` (``UNetDiscriminatorWithSpectralNorm``)
- and what they import: ``mmedit/__init__.py``, ``version.py``, ``utils/`` (``get_root_logger``),
  ``models/registry.py``.

The package ``__init__`` files of ``mmedit.models`` and its sub-packages import every model of mmediting (and
mmcv's compiled ops), so the official process imports the files above from a scratch copy of the package whose
``models/**/__init__.py`` are replaced by a few lines that import only them (:data:`GLUE`); the network code itself
is the official file. The same files are byte-identical in the ``mmedit==0.16.1`` wheel on PyPI.

Pinned versions (what the committed record was made with): mmcv 1.7.2 (pure Python, built without ops), addict
2.4.0, yapf 0.43.0, torch 2.15.0 (CPU, the project's venv), Python 3.11.

Setup (outside the project tree; ``PARITY_ENV`` is any folder outside it)::

    # official sources at the commit
    git clone https://github.com/open-mmlab/mmagic && cd mmagic
    mkdir -p $PARITY_ENV/official_6f2f3ae
    git archive 6f2f3ae2ad3e365f94bbf19c01a1d1056dad3895 mmedit | tar -x -C $PARITY_ENV/official_6f2f3ae
    # (or: pip download --no-deps mmedit==0.16.1 and unzip the wheel into that folder)
    # mmcv 1.x without ops; its setup.py needs pkg_resources, hence an old setuptools in a build venv
    python3 -m venv $PARITY_ENV/buildvenv
    $PARITY_ENV/buildvenv/bin/pip install "setuptools<70" wheel numpy
    MMCV_WITH_OPS=0 $PARITY_ENV/buildvenv/bin/pip install --target $PARITY_ENV/rbvsr --no-deps \\
        --no-build-isolation mmcv==1.7.2 addict==2.4.0 yapf==0.43.0

Run from the project root (about 35 s on 2 CPU cores)::

    .venv/bin/python benchmarks/parity/realbasicvsr_official.py \\
        --official-src $PARITY_ENV/official_6f2f3ae --mmcv-env $PARITY_ENV/rbvsr [--force]

The official part runs in a separate Python process (this file with ``--worker``, ``PYTHONPATH`` = the mmcv
target folder + the scratch package; it does not import ``zoo``). It

1. builds tiny official networks, ``RealBasicVSRNet(mid_channels=8, num_propagation_blocks=2,
   num_cleaning_blocks=2)`` (SPyNet has a fixed size: 1,440,300 parameters) and
   ``UNetDiscriminatorWithSpectralNorm(3, mid_channels=8)``, and gives every parameter seeded random values
   (:func:`random_official_weights`; not the default init, so that every layer shapes the output);
   ``generator`` and ``generator_ema`` differ everywhere except in SPyNet, which is frozen during training and
   so equal in both copies of a released file (one stored copy keeps the file small);
2. saves them with ``mmcv.runner.save_checkpoint`` in the layout of the released ``RealBasicVSR_x4.pth``
   (``{'meta', 'state_dict': {'generator.*', 'generator_ema.*', 'discriminator.*', 'step_counter'}}``) and loads
   them back with ``mmcv.runner.load_checkpoint``. That file is 6.5 MB (mostly SPyNet), so it is not committed:
   the record keeps its key list, shapes, ``meta``, the few values that are not seeded draws and the SHA-256 of its
   tensors, and :func:`regenerate_checkpoint` (used by the test) rebuilds it from the seeds;
3. runs the official generator (eval mode, no grad, ``return_lqs=True``) on fixed real clips: frames of the
   embedded sample clip, area-downsampled x4 and rounded to 8 bits (stored as uint8): a 64x64 batch of two
   3-frame clips with ``dynamic_refine_thres`` 255, a value between the first and second cleaning residues, and 0
   (1, 2 and 3 cleaning passes, counted with a forward hook on ``image_cleaning``), the same with the raw
   generator; a 70x93 3-frame clip (threshold 5, the mmediting test value); a mirror-extended 4-frame clip
   (``f0 f1 f1 f0``, the forward flows are not recomputed); and the discriminator on two 48x64 crops of
   full-resolution frames, in eval mode and for one training-mode forward (one power iteration);
4. writes the key names and shapes of the full-size official networks (the released configuration) to
   ``tests/data/realbasicvsr_official_keys.json`` (used by ``tests/test_convert.py``);
5. stores into ``tests/data/parity/realbasicvsr_official.pt`` (about 0.7 MB) the inputs, the output at every 7th row and column
   plus the last ones (7 is prime to the x4 pixel-shuffle period, so every sub-pixel phase is covered; the full
   outputs would be several MB), the cleaned LQ at every 3rd row and column plus the last ones, per-frame means of
   the full outputs, the discriminator outputs in full, the pass counts and this metadata.

Then, unless ``--no-check``, it runs the project's network on the record and prints the max abs errors.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "parity"
RECORD_FILE = DATA / "realbasicvsr_official.pt"
#: Name of the official-format checkpoint; it is not committed (6.5 MB, mostly the fixed-size SPyNet) but
#: regenerated from the seeds by :func:`regenerate_checkpoint` and checked against the record's SHA-256.
CHECKPOINT_FILE_NAME = "realbasicvsr_official_x4.pth"

OFFICIAL_REPO = "open-mmlab/mmediting (now open-mmlab/mmagic), branch 0.x"
OFFICIAL_COMMIT = "6f2f3ae2ad3e365f94bbf19c01a1d1056dad3895"
#: SHA-256 of the official files used (``mmedit/`` relative), at :data:`OFFICIAL_COMMIT` (same in mmedit 0.16.1).
OFFICIAL_SHA256 = {
    "__init__.py": "0cf6f8dd55f36934e7977a05596e1f8aa85efb35999e2ef569ee8be3b51dd390",
    "version.py": "8c727b11a577ceec907b0ee9176caecf78bbca724e3e8e63c34dec2f0ce78d1f",
    "utils/__init__.py": "3ea61c0c98e15ca808948bb612e8eb9bdf043e5d21cca5b2cca5537618f13bbf",
    "utils/cli.py": "2fd498c0e1fa46236b9439807498953998c4c48d64be3f007ac996022655389a",
    "utils/logger.py": "f7baac74c4004f1b78b859ad1881c79951f3b7af3b7d0ca176124be74eef160f",
    "utils/misc.py": "cdad609dbaae9939c8ac1f5f4db1ac5ed7e9a6b7af12c3f6d3c5286a4f7eb3dc",
    "utils/setup_env.py": "7538eae63d652586c0a0e4de1e8967d82a1eb7b6df48fe8e395cd8df2a54d5d5",
    "models/registry.py": "a2d2ba7344a1847cfe912f05365776b0f4a03a1257932c1f462b8fb3ec911fd7",
    "models/common/flow_warp.py": "13e606f63f8791982e5cbe9bc35ccc36120c8064fb001fbbde215062878e5392",
    "models/common/sr_backbone_utils.py": "11344003cd73f853926c1191ee3f9a10ff566fbcd997075d803b7d7fe7db50fd",
    "models/common/upsample.py": "e92968f38e7f558e968c23a1341772fb6951fd22fda2628a78b396eb3d3156f2",
    "models/backbones/sr_backbones/basicvsr_net.py": "67fe9cf655de93a25954b4fd70e3dc24b63c2fe549bd2e1d6ac056a2eb04c458",
    "models/backbones/sr_backbones/real_basicvsr_net.py":
        "1be6234938ad45cf09f09617ea44771bf20c5b74842a0ce0f21272a8f959cfeb",
    "models/components/discriminators/unet_disc.py": "2a862e5a8236d33b4b15717a4d8647e2382d45690e7dcea1cfa94e140606a044",
}
#: Package ``__init__`` files of the scratch copy (the official ones import all of mmediting and mmcv.ops).
GLUE = {
    "models/__init__.py": "",
    "models/common/__init__.py": ("from .flow_warp import flow_warp\n"
                                  "from .sr_backbone_utils import ResidualBlockNoBN, default_init_weights, make_layer\n"
                                  "from .upsample import PixelShufflePack\n"),
    "models/backbones/__init__.py": "",
    "models/backbones/sr_backbones/__init__.py": "",
    "models/components/__init__.py": "",
    "models/components/discriminators/__init__.py": "",
}

GENERATOR = dict(mid_channels=8, num_propagation_blocks=2, num_cleaning_blocks=2)
#: The released network's configuration (``RealBasicVSR_x4.pth``), whose key names and shapes are recorded in
#: :data:`KEYS_FILE` for ``tests/test_convert.py``.
FULL_GENERATOR = dict(mid_channels=64, num_propagation_blocks=20, num_cleaning_blocks=20)
KEYS_FILE = ROOT / "tests" / "data" / "realbasicvsr_official_keys.json"
#: Top-level key prefixes of the released file's ``state_dict`` (its training wrapper also saves the perceptual
#: loss's VGG).
RELEASED_PREFIXES = ["generator.", "generator_ema.", "discriminator.", "perceptual_loss.", "step_counter"]
DISCRIMINATOR = dict(in_channels=3, mid_channels=4, skip_connection=True)
#: Seeds of :func:`random_official_weights` per component, and of nothing else (the inputs are real frames).
#: ``generator_ema``'s seed was chosen among 2..39 because its cleaning residue decreases from pass to pass
#: (5.59, 5.13, 4.72 grey levels on the 64x64 batch), so that some threshold gives exactly two passes.
SEEDS = dict(generator=1, generator_ema=4, spynet=3, discriminator=5)
STEP_COUNTER = 150000.0
#: Output sampling of a run (``hr_stride``, ``lq_stride``): every n-th row / column of the x4 output and of the
#: cleaned LQ, plus the last row / column; denser for the first run. Strides prime to 4 cover every sub-pixel phase.
DENSE, SPARSE = dict(hr_stride=7, lq_stride=3), dict(hr_stride=11, lq_stride=5)


# --- weights (official process) ----------------------------------------------------------------------------

def _gain(key: str) -> float:
    """Std x sqrt(fan_in) of a conv weight: He for layers followed by a (leaky) ReLU, smaller where a layer's
    output is added to a signal (residual-block second convs, cleaning residue, SPyNet flow residue, SR residue)."""
    if key.endswith("image_cleaning.1.weight"):
        return 0.06
    if key.endswith("basic_module.4.conv.weight"):  # SPyNet: flow residue of each pyramid level
        return 0.6
    if key.endswith("conv_last.weight"):
        return 0.3
    if key.endswith("conv2.weight"):
        return 0.7
    return math.sqrt(2.0)


def random_official_weights(state: dict, seed: int, *, keep=lambda key: False) -> dict:
    """Seeded random values for every parameter of an official state dict (in its order).

    Conv weights: N(0, (gain / sqrt(fan_in))^2) (:func:`_gain`); biases N(0, 0.05^2) (0.005 for the cleaning and
    flow residues); spectral-norm ``weight_u`` / ``weight_v``: 30 power iterations from a random unit vector on
    ``weight_orig`` (converged, as after training). Buffers that are not parameters (SPyNet ``mean`` / ``std``)
    and the keys for which ``keep(key)`` is true are left unchanged.
    """
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in state.items():
        if keep(key) or key.endswith(("spynet.mean", "spynet.std")) or key.endswith(("weight_u", "weight_v")):
            out[key] = value.clone()
        elif value.ndim == 4:
            fan_in = value[0].numel()
            out[key] = torch.randn(value.shape, generator=g) * (_gain(key) / math.sqrt(fan_in))
        elif key.endswith("bias"):
            small = key.endswith(("image_cleaning.1.bias", "basic_module.4.conv.bias"))
            out[key] = torch.randn(value.shape, generator=g) * (0.005 if small else 0.05)
        else:
            raise ValueError(f"no rule for {key} {tuple(value.shape)}")
    for key in state:
        if key.endswith("weight_orig"):
            base = key[: -len("weight_orig")]
            w = out[key].flatten(1)
            u = torch.nn.functional.normalize(torch.randn(w.shape[0], generator=g), dim=0)
            for _ in range(30):
                v = torch.nn.functional.normalize(w.t() @ u, dim=0)
                u = torch.nn.functional.normalize(w @ v, dim=0)
            out[base + "weight_u"], out[base + "weight_v"] = u, v
    return out


def official_state_dict(template: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The complete state dict of the tiny released-layout checkpoint, from :data:`SEEDS`.

    ``template`` is the state dict of the official container (``generator.*``, ``generator_ema.*``,
    ``discriminator.*``, ``step_counter``) in the official key order; only its shapes are used, except for the values
    :func:`random_official_weights` keeps (SPyNet ``mean`` / ``std``) and ``step_counter``, which are copied. Both
    generator copies get the same SPyNet (seed ``spynet``; frozen in training, so equal in a released file).
    The spectral-norm ``weight_u`` / ``weight_v`` come from a power iteration (matrix products, whose last bits may
    depend on the CPU); the test therefore takes them from the record rather than recomputing them.
    """
    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in template.items() if k.startswith(prefix)}

    is_spynet = lambda key: ".spynet." in key  # noqa: E731
    spynet = random_official_weights({k: v for k, v in part("generator.").items() if is_spynet(k)}, SEEDS["spynet"])
    out = {}
    for name in ("generator", "generator_ema"):
        state = random_official_weights(part(name + "."), SEEDS[name], keep=is_spynet)
        state.update(spynet)
        out.update({f"{name}.{k}": v for k, v in state.items()})
    out.update({f"discriminator.{k}": v for k, v in
                random_official_weights(part("discriminator."), SEEDS["discriminator"]).items()})
    out["step_counter"] = template["step_counter"].clone()
    return {key: out[key] for key in template}


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor of a state dict (key order, names, dtypes, shapes, bytes)."""
    digest = hashlib.sha256()
    for key, value in state.items():
        value = value.detach().contiguous().cpu()
        digest.update(f"{key}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.numpy().tobytes())
    return digest.hexdigest()


def stored_key(key: str) -> bool:
    """Whether the record stores ``key``'s value instead of regenerating it: buffers kept by
    :func:`random_official_weights`, the spectral-norm vectors (see :func:`official_state_dict`), ``step_counter``."""
    return key.endswith(("spynet.mean", "spynet.std", "weight_u", "weight_v")) or key == "step_counter"


def regenerate_checkpoint(meta: dict, path: Path) -> Path:
    """Write the recorded tiny official checkpoint to ``path`` (``torch.save`` of ``{'meta', 'state_dict'}``, the
    layout ``mmcv.runner.save_checkpoint`` writes), from the seeds and the record's ``meta``.

    Raises:
        AssertionError: the regenerated tensors differ from the official file's (SHA-256 of the state dict).
    """
    stored = meta["stored_values"]
    template = {key: stored[key] if key in stored else torch.zeros(shape, dtype=getattr(torch, dtype))
                for key, shape, dtype in meta["state_keys"]}
    state = official_state_dict(template)
    state.update({key: value.clone() for key, value in stored.items()})
    assert state_digest(state) == meta["state_sha256"], "regenerated weights differ from the official file"
    torch.save({"meta": meta["checkpoint_meta"], "state_dict": state}, path)
    return path


# --- official process --------------------------------------------------------------------------------------

class _Container(torch.nn.Module):
    """The parts of mmediting's ``RealBasicVSR`` model that a released checkpoint holds (no perceptual VGG)."""

    def __init__(self, generator, generator_ema, discriminator):
        super().__init__()
        self.generator, self.generator_ema, self.discriminator = generator, generator_ema, discriminator
        self.register_buffer("step_counter", torch.tensor([STEP_COUNTER]))


def worker(inputs_file: Path, out_dir: Path) -> None:
    """Runs in the official process: build, save, reload and run the official networks."""
    import mmcv
    from mmcv.runner import load_checkpoint, save_checkpoint

    import mmedit
    from mmedit.models.backbones.sr_backbones.real_basicvsr_net import RealBasicVSRNet
    from mmedit.models.components.discriminators.unet_disc import UNetDiscriminatorWithSpectralNorm

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    inputs = torch.load(inputs_file)

    def build(thres=255.0):
        return RealBasicVSRNet(**GENERATOR, dynamic_refine_thres=thres)

    def build_disc():
        return UNetDiscriminatorWithSpectralNorm(DISCRIMINATOR["in_channels"], DISCRIMINATOR["mid_channels"],
                                                 DISCRIMINATOR["skip_connection"])

    # 1. weights
    container = _Container(build(), build(), build_disc())
    container.load_state_dict(official_state_dict(container.state_dict()), strict=True)

    # 2. released layout, saved and loaded back by mmcv
    ckpt_path = out_dir / CHECKPOINT_FILE_NAME
    meta = dict(mmedit_version=mmedit.__version__, iter=int(STEP_COUNTER),
                note="tiny RealBasicVSR with seeded random weights, benchmarks/parity/realbasicvsr_official.py")
    save_checkpoint(container, str(ckpt_path), meta=meta)
    loaded = {}

    def load_generator(use_ema, thres):
        """A freshly built official generator with ``dynamic_refine_thres=thres``, weights from the file."""
        if (use_ema, thres) not in loaded:
            model = _Container(build(thres), build(thres), build_disc())
            load_checkpoint(model, str(ckpt_path), map_location="cpu", strict=True)
            loaded[use_ema, thres] = (model.generator_ema if use_ema else model.generator).eval()
        return loaded[use_ema, thres]

    model = _Container(build(), build(), build_disc())
    load_checkpoint(model, str(ckpt_path), map_location="cpu", strict=True)
    disc = model.discriminator

    # 3. runs
    def run_generator(net, lq):
        residues = []
        hook = net.image_cleaning.register_forward_hook(
            lambda module, args, output: residues.append(float(torch.mean(torch.abs(output)))))
        with torch.no_grad():
            sr, cleaned = net(lq.clone(), return_lqs=True)
        hook.remove()
        return sr, cleaned, residues

    results = {"runs": [], "versions": dict(mmcv=mmcv.__version__, mmedit=mmedit.__version__,
                                            torch=str(torch.__version__), python=sys.version.split()[0])}
    # the threshold between the first and second cleaning residues (2 passes), from a 3-pass run
    _, _, res = run_generator(load_generator(True, 0.0), inputs["clips"]["batch64"].float() / 255)
    two_pass = round(255 * (res[0] + res[1]) / 2, 2)
    results["residues_3_passes"] = res
    results["two_pass_threshold"] = two_pass
    for run in inputs["runs"]:
        thres = two_pass if run["dynamic_refine_thres"] == "two_pass" else run["dynamic_refine_thres"]
        net = load_generator(run["use_ema"], thres)
        lq = inputs["clips"][run["clip"]].float() / 255
        sr, cleaned, residues = run_generator(net, lq)
        with torch.no_grad():  # size of the official SPyNet flows on the cleaned frames (pixels), for the record
            flow = net.basicvsr.spynet(cleaned[:, :-1].flatten(0, 1), cleaned[:, 1:].flatten(0, 1))
        results["runs"].append({**run, "dynamic_refine_thres": thres, "sr": sr, "cleaned": cleaned,
                                "residues": residues, "cleaning_passes": len(residues),
                                "flow_abs_mean": float(flow.abs().mean()), "flow_abs_max": float(flow.abs().max()),
                                "mirror_extended": bool(net.basicvsr.is_mirror_extended)})
    x = inputs["disc_input"].float() / 255
    with torch.no_grad():
        disc.eval()
        results["disc_eval"] = disc(x.clone())
        disc.train()
        results["disc_train"] = disc(x.clone())
        results["disc_train_weight_u"] = {k: v.clone() for k, v in disc.state_dict().items() if k.endswith("_u")}
    full_generator = RealBasicVSRNet(**FULL_GENERATOR)
    full_disc = UNetDiscriminatorWithSpectralNorm(3, 64, True)
    results["full_size_keys"] = {"generator": {k: list(v.shape) for k, v in full_generator.state_dict().items()},
                                 "discriminator": {k: list(v.shape) for k, v in full_disc.state_dict().items()}}
    results["imported"] = sorted(m for m in sys.modules if m == "zoo" or m.startswith("zoo."))
    torch.save(results, out_dir / "official_outputs.pt")


# --- project process ---------------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def scratch_package(official_src: Path, dest: Path) -> dict[str, str]:
    """Copy the official files (SHA-256 checked) and the :data:`GLUE` ``__init__`` files to ``dest/mmedit``."""
    digests = {}
    for rel, expected in OFFICIAL_SHA256.items():
        src = official_src / "mmedit" / rel
        digest = _sha256(src)
        if digest != expected:
            raise SystemExit(f"{src}: SHA-256 {digest} is not that of {rel} at {OFFICIAL_COMMIT}")
        (dest / "mmedit" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest / "mmedit" / rel)
        digests[rel] = digest
    for rel, text in GLUE.items():
        (dest / "mmedit" / rel).write_text(text)
    return digests


def sample_indices(size: int, stride: int) -> torch.Tensor:
    """Every ``stride``-th index and the last one."""
    return torch.tensor(sorted(set(range(0, size, stride)) | {size - 1}))


def subsample(x: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rows, cols = sample_indices(x.shape[-2], stride), sample_indices(x.shape[-1], stride)
    return x[..., rows, :][..., cols].contiguous(), rows, cols


def frame_stats(x: torch.Tensor) -> torch.Tensor:
    """Per-(b, t, c) mean and mean absolute value of the full output, float64, shape (..., 2)."""
    x = x.double()
    return torch.stack([x.mean(dim=(-2, -1)), x.abs().mean(dim=(-2, -1))], dim=-1)


def real_inputs() -> dict:
    """uint8 clips from the embedded sample (640x360): area-downsampled x4 to 160x90, rounded, cropped."""
    import torch.nn.functional as F

    from zoo.data.video_io import open_video
    from zoo.testing import sample_clip_dir

    frames = open_video(sample_clip_dir()).read(0, 20)  # (20, 3, 360, 640) float [0, 1]
    lq = (F.interpolate(frames, scale_factor=0.25, mode="area") * 255).round().clamp(0, 255).to(torch.uint8)

    def crop(start, stop, y, x, h, w):
        return lq[start:stop, :, y:y + h, x:x + w]

    clips = {
        "batch64": torch.stack([crop(0, 3, 8, 30, 64, 64), crop(6, 9, 20, 90, 64, 64)]),  # (2, 3, 3, 64, 64)
        "odd70x93": crop(12, 15, 10, 50, 70, 93)[None],  # (1, 3, 3, 70, 93)
        "mirror64x80": torch.cat([crop(16, 18, 13, 0, 64, 80), crop(16, 18, 13, 0, 64, 80).flip(0)])[None],
    }
    hr = (frames[18:20, :, 150:198, 300:364] * 255).round().to(torch.uint8)  # (2, 3, 48, 64)
    return {"clips": {k: v.contiguous() for k, v in clips.items()}, "disc_input": hr.contiguous()}


RUNS = [
    dict(name="ema_batch64_thres255", clip="batch64", use_ema=True, dynamic_refine_thres=255.0, **DENSE),
    dict(name="ema_batch64_two_pass", clip="batch64", use_ema=True, dynamic_refine_thres="two_pass", **SPARSE),
    dict(name="ema_batch64_thres0", clip="batch64", use_ema=True, dynamic_refine_thres=0.0, **SPARSE),
    dict(name="raw_batch64_thres255", clip="batch64", use_ema=False, dynamic_refine_thres=255.0, **SPARSE),
    dict(name="ema_odd70x93_thres5", clip="odd70x93", use_ema=True, dynamic_refine_thres=5.0, **SPARSE),
    dict(name="ema_mirror64x80_thres255", clip="mirror64x80", use_ema=True, dynamic_refine_thres=255.0, **SPARSE),
]


def record(official_src: Path, mmcv_env: Path) -> dict:
    inputs = {**real_inputs(), "runs": RUNS}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        digests = scratch_package(official_src, tmp / "official")
        torch.save(inputs, tmp / "inputs.pt")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(mmcv_env), str(tmp / "official")])}
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(tmp / "inputs.pt"), str(tmp)],
                       check=True, env=env, cwd=tmp)
        official = torch.load(tmp / "official_outputs.pt")
        if official["imported"]:
            raise SystemExit(f"the official process imported project modules: {official['imported']}")
        ckpt = torch.load(tmp / CHECKPOINT_FILE_NAME, map_location="cpu", weights_only=False)
    runs = []
    for run in official["runs"]:
        sr, sr_rows, sr_cols = subsample(run["sr"], run["hr_stride"])
        cleaned, lq_rows, lq_cols = subsample(run["cleaned"], run["lq_stride"])
        runs.append({key: run[key] for key in ("name", "clip", "use_ema", "dynamic_refine_thres", "cleaning_passes",
                                               "residues", "mirror_extended", "hr_stride", "lq_stride", "flow_abs_mean",
                                               "flow_abs_max")}
                    | dict(sr_shape=tuple(run["sr"].shape), sr=sr, sr_rows=sr_rows, sr_cols=sr_cols,
                           sr_stats=frame_stats(run["sr"]), cleaned=cleaned, lq_rows=lq_rows, lq_cols=lq_cols,
                           cleaned_stats=frame_stats(run["cleaned"])))
    meta = dict(
        official_repo=OFFICIAL_REPO, official_commit=OFFICIAL_COMMIT, official_files_sha256=digests,
        glue_init_files=GLUE, versions=official["versions"], generator_config=GENERATOR,
        discriminator_config=DISCRIMINATOR, weight_seeds=SEEDS, weight_rule=random_official_weights.__doc__.strip(),
        spynet_shared_between_generator_copies=True, two_pass_threshold=official["two_pass_threshold"],
        residues_3_passes=official["residues_3_passes"],
        inputs="frames of zoo.testing.sample_clip_dir(), area x0.25 (torch), rounded to uint8, cropped; "
               "network input = uint8 / 255 (float32)",
        checkpoint_file=CHECKPOINT_FILE_NAME, checkpoint_meta=ckpt["meta"],
        state_keys=[(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in ckpt["state_dict"].items()],
        stored_values={k: v.clone() for k, v in ckpt["state_dict"].items() if stored_key(k)},
        state_sha256=state_digest(ckpt["state_dict"]),
        script="benchmarks/parity/realbasicvsr_official.py")
    keys = {"source": f"mmediting 0.x ({OFFICIAL_REPO}, commit {OFFICIAL_COMMIT}): "
                      f"RealBasicVSRNet({', '.join(f'{k}={v}' for k, v in FULL_GENERATOR.items())}) and "
                      "UNetDiscriminatorWithSpectralNorm(in_channels=3, mid_channels=64).state_dict() key -> shape; "
                      "written by benchmarks/parity/realbasicvsr_official.py",
            "checkpoint_prefixes": RELEASED_PREFIXES, **official["full_size_keys"]}
    KEYS_FILE.write_text(json.dumps(keys, indent=1) + "\n")
    return dict(meta=meta, clips=inputs["clips"], runs=runs,
                discriminator=dict(input=inputs["disc_input"], eval=official["disc_eval"],
                                   train=official["disc_train"], train_weight_u=official["disc_train_weight_u"]))


def check(rec: dict, checkpoint: Path) -> dict[str, float]:
    """Max abs error of the project's networks on the record (what the CI test asserts)."""
    from zoo.hub import load_pretrained
    from zoo.layers.discriminators import UNetDiscriminatorSN
    from zoo.models.realbasicvsr.convert import convert_official_discriminator
    from zoo.weights import read_checkpoint

    errors = {}
    for run in rec["runs"]:
        net = load_pretrained("realbasicvsr", checkpoint, use_ema=run["use_ema"],
                              dynamic_refine_thres=run["dynamic_refine_thres"])
        with torch.no_grad():
            sr, cleaned = net(rec["clips"][run["clip"]].float() / 255, return_lqs=True)
        errors[run["name"]] = max(float((subsample(sr, run["hr_stride"])[0] - run["sr"]).abs().max()),
                                  float((subsample(cleaned, run["lq_stride"])[0] - run["cleaned"]).abs().max()))
    d = rec["discriminator"]
    disc = UNetDiscriminatorSN(**rec["meta"]["discriminator_config"])
    disc.load_state_dict(convert_official_discriminator(read_checkpoint(checkpoint)))
    x = d["input"].float() / 255
    with torch.no_grad():
        errors["discriminator_eval"] = float((disc.eval()(x) - d["eval"]).abs().max())
        errors["discriminator_train"] = float((disc.train()(x) - d["train"]).abs().max())
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official-src", type=Path, help="folder holding the official mmedit/ package")
    parser.add_argument("--mmcv-env", type=Path, help="pip --target folder with mmcv 1.7.2, addict, yapf")
    parser.add_argument("--force", action="store_true", help="overwrite the committed record")
    parser.add_argument("--no-check", action="store_true", help="do not run the project's network afterwards")
    parser.add_argument("--worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    if not args.official_src or not args.mmcv_env:
        parser.error("--official-src and --mmcv-env are required")
    if RECORD_FILE.exists() and not args.force:
        raise SystemExit(f"{RECORD_FILE} exists; pass --force to overwrite it")
    rec = record(args.official_src, args.mmcv_env)
    DATA.mkdir(parents=True, exist_ok=True)
    torch.save(rec, RECORD_FILE)
    summary = {run["name"]: dict(passes=run["cleaning_passes"], thres=run["dynamic_refine_thres"],
                                 residues=[round(r * 255, 3) for r in run["residues"]],
                                 mirror=run["mirror_extended"], flow=(round(run["flow_abs_mean"], 3), round(run["flow_abs_max"], 3)),
                                 sr_range=(float(run["sr"].min()), float(run["sr"].max())), sr_absmax=float(run["sr"].abs().max()))
               for run in rec["runs"]}
    print(json.dumps(summary, indent=1))
    print(f"{RECORD_FILE.relative_to(ROOT)}: {RECORD_FILE.stat().st_size} bytes")
    if not args.no_check:
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = regenerate_checkpoint(rec["meta"], Path(tmp) / CHECKPOINT_FILE_NAME)
            for name, error in check(rec, checkpoint).items():
                print(f"max abs error {name}: {error:.3e}")


if __name__ == "__main__":
    main()
