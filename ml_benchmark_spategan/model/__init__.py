"""Models (pure torch, no xarray).

* :mod:`.spagan2d` - SpaGAN ``Generator``, ``Discriminator``, ``train_gan_step`` (n_critic D phases, one G phase)
* :mod:`.unet` - ``UNet``, the deterministic U-Net baseline (masked MSE)
* :mod:`.resgan` - ``ResidualGenerator``: U-Net mean + SpaGAN residual (the ``resgan`` model)
* :mod:`.baselines` - ``DeepESD`` (benchmark reference), ``BilinearBaseline``, ``train_regression_step``
* :mod:`.losses` - masked content losses and adversarial losses
* :mod:`.registry` - ``build_model`` / ``register_model`` / ``ModelBundle``
* :mod:`.amp` - precision resolution and autocast (optimiser steps and scalers: :mod:`..training.optim`)
* :mod:`.spectral` - spectral normalisation with fp32 power iteration under autocast
* :mod:`.blocks` - residual blocks, MC dropout, day-of-year FiLM, weight init, resizing helpers
"""
