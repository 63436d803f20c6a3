"""Models (pure torch, no xarray).

* :mod:`.spagan2d` - SpaGAN ``Generator``, ``Discriminator``, ``train_gan_step`` (n_critic D phases, one G phase)
* :mod:`.baselines` - ``DeepESD`` (benchmark reference), ``BilinearBaseline``, ``train_regression_step``
* :mod:`.losses` - masked content losses and adversarial losses
* :mod:`.registry` - ``build_model`` / ``register_model`` / ``ModelBundle``
* :mod:`.amp` - precision resolution, autocast, grad scalers, the shared optimiser update
* :mod:`.blocks` - residual blocks, MC dropout, weight init, resizing helpers
"""
