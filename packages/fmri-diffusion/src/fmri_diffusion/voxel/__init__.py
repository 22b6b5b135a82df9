"""The fMRI-space model: a voxel VAE and a DDPM in its latent space, its training, evaluation and config."""
