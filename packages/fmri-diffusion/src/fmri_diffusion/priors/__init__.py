"""Base models (priors): a user's Stable Diffusion folder or cache id, or the small one pre-trained here."""
