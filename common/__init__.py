"""parcnetv2: the golden NumPy reference of ParCNetV2, C depthwise-convolution kernels and a
conformance suite for other implementations.

This folder (``common/``) is the package root: the version and the exceptions every layer raises
(``parcnetv2.errors``). Subpackages, bottom to top: ``parcnetv2.spec`` (the normative spec and its
data), ``parcnetv2.reference`` (the golden forward pass and weights I/O), ``parcnetv2.cext`` (C
kernels), ``parcnetv2.pytorch`` (the PyTorch port), ``parcnetv2.engine`` (CPU inference),
``parcnetv2.conformance`` (the pytest suite), ``parcnetv2.cli`` (the command line).

Shape legend used throughout: N batch, C channels, H height, W width, K kernel length.
"""

__version__ = "0.1.0"
