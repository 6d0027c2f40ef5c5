"""videodiff: Sora-style latent video diffusion at native resolution, on Lightning."""

__version__ = "0.1.0"
