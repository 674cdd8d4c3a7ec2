"""VideoGigaGAN (Xu et al., ECCV 2024): the GigaGAN upsampler inflated to video. See README.md in this folder.

``spec.py`` (the family's entry in the table), ``net.py``, ``convert.py`` (loading), ``system.py``. Import the
modules; this package file imports nothing.
"""
