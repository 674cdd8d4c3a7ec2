"""Upscale-A-Video (Zhou et al., CVPR 2024): video UNet and temporal VAE on diffusers, official-weight conversion.

A family is its folder: ``spec.py`` (what the zoo needs to know: loader, weight forms, sampling options, variants),
``net.py`` (networks), ``sampling.py`` (the sampler), ``load.py`` (weights folders and checkpoints), ``convert.py``
(official key maps), ``system.py`` (training). Import the modules; this package file imports nothing.
"""
