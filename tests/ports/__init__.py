"""A zoo of ParCNetV2 ports written the way outsiders write them (test material for issue 8).

Every ``<name>.py`` exposes ``factory(variant, **options) -> torch.nn.Module`` for the official
variants (``parcnetv2_xt``, ``_tiny``, ``_small``, ``_base``; 1000 classes). ``catalog.toml`` says
which ports are correct (the conformance harness must accept them) and which carry exactly one
mistake (it must reject them), and under which input or weights the mistake shows;
``verify.py`` proves both against the float64 NumPy reference. The ports never import the
project's own PyTorch port or the harness: they are written from the official semantics only.
"""
