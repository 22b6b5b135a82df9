"""The networks: small UNet/VAE builders, the fMRI conditioner, the cVAE, the voxel VAE and denoiser."""
