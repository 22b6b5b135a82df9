"""Training pieces: the denoising step and objectives, LoRA, augmentation, the autoencoder stage."""
