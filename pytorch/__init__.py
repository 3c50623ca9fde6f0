"""ParCNetV2 in PyTorch with the official module and parameter names (spec clause 2).

``parcnetv2.pytorch`` is the project's own PyTorch implementation, written from the spec: a
checkpoint of the official code (``XuRuihan/ParCNetV2``) loads into it unchanged. It is the model
the reference is checked against, the ``torch`` conformance backend, and the source of the ONNX
exports the ``onnx`` backend and ``parcnetv2 bench`` run. Importing it imports torch.

    from parcnetv2.pytorch import build_model
    model = build_model("parcnetv2_tiny")          # nn.Module, official initialisation
    logits = model(images)                         # NCHW (N, 3, H, W) -> (N, num_classes)

Shape legend: N, C, H, W, K.
"""

from parcnetv2.pytorch import model as _model
from parcnetv2.pytorch.model import *  # noqa: F403 - the public names are model.py's __all__

__all__ = list(_model.__all__)
