"""vsrzoo: video super-resolution paradigms side by side on one data pipeline, one set of metrics and one CLI.

Public entry points::

    import zoo
    net = zoo.load_pretrained("realbasicvsr", "RealBasicVSR_x4.pth", dynamic_refine_thres=5)
    sr = net(lq)            # lq: (b, t, 3, h, w) RGB float in [0, 1] -> (b, t, 3, 4h, 4w), unclamped

    from zoo.data import VSRDataModule, open_video
    from zoo.inference import upscale_video
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "available_families", "load_pretrained"]


def __getattr__(name: str):  # noqa: ANN202 - lazy import keeps `import zoo` light
    if name in ("load_pretrained", "available_families"):
        from zoo import hub

        return getattr(hub, name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
