"""DC-VSR (Han et al., arXiv 2502.03502): Stable Video Diffusion on spatio-temporal tiles with SAP, TAP and DSSAG."""
