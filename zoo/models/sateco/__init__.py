"""SATeCo (Chen et al., CVPR 2024): frozen Stable Diffusion with trained SFA / TFA adapters, a video upscaler and a
refiner.

A family is its folder: ``spec.py`` (loader, weight forms, sampling options, variants), ``net.py`` (the trained
networks: upscaler, latent encoder, SFA/TFA adapters, refiner), ``sampling.py`` (the pipeline and its sampler),
``load.py`` (local Stable Diffusion folders and this project's checkpoints), ``system.py`` (the four training stages).
Import the modules; this package file imports nothing.
"""
