"""Sampling: `FmriImagePipeline` (DDIM / DPM-Solver++, guidance, img2img) and the pixel/model-space maps."""
