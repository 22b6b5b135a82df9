"""Generative models of fMRI patterns themselves: a voxel VAE and a DDPM in its latent space."""

from fmri_diffusion.voxel.denoiser import LatentDenoiser, sample_latents
from fmri_diffusion.voxel.vae import VoxelVAE, vae_loss

__all__ = ["LatentDenoiser", "VoxelVAE", "sample_latents", "vae_loss"]
