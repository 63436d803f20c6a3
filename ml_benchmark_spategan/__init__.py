"""SpaGAN climate downscaling for CORDEX ML-Bench."""
