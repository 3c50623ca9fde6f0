"""parcnetv2: the golden NumPy reference of ParCNetV2, C depthwise-convolution kernels and a
conformance suite for other implementations.

Subpackages: ``parcnetv2.reference`` (the golden forward pass), ``parcnetv2.spec`` (the normative
spec and its data), ``parcnetv2.cext`` (C kernels), ``parcnetv2.conformance`` (the pytest suite).

Shape legend used throughout: N batch, C channels, H height, W width, K kernel length.
"""

__version__ = "0.1.0"
