"""What every latent-diffusion family of the zoo shares: window/tile planning and blending, the sampler loop over
diffusers schedulers, classifier-free guidance, chunked and tiled VAE coding, local-folder loading, attention
processors and the layers that inflate image diffusion networks to video.

Modules: :mod:`~zoo.diffusion.tiles` (planner, weights, accumulator; torch only, also used by :mod:`zoo.inference`),
:mod:`~zoo.diffusion.sampler`, :mod:`~zoo.diffusion.vae`, :mod:`~zoo.diffusion.folders`,
:mod:`~zoo.diffusion.attention`, :mod:`~zoo.diffusion.inflation`, :mod:`~zoo.diffusion.targets`,
:mod:`~zoo.diffusion.text` (CLIP text tokens), :mod:`~zoo.diffusion.bases` (configurations of the pretrained bases,
for random networks of their sizes). The training base of these families is
:class:`zoo.systems.latent_diffusion.LatentDiffusionSystem` (a :class:`~zoo.systems.base.VSRSystem`, so it lives with
the systems, above this package). Importing the package imports nothing heavy; import the modules.
"""
