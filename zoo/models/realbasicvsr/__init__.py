"""RealBasicVSR (Chan et al., CVPR 2022): ``spec.py`` (the family's entry in the table), ``net.py``, ``convert.py``
(official weights and loading), ``system.py``. Import the modules; this package file imports nothing."""
