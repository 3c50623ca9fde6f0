"""The conformance harness of ParCNetV2 (spec clause 14): ``pytest conformance --backend NAME``.

Checks any implementation (a backend, spec clause 14.2; ``parcnetv2.conformance.protocol``)
against the golden float64 reference, operation by operation, component by component and as a
whole model, with per-element error bounds (clauses 11.4-11.9). The pytest plugin
(``parcnetv2.conformance.plugin``) adds the options; the test modules ``test_*.py`` are the
checks; ``mutants`` holds the backends that prove the checks' sensitivity. Importing this
package imports nothing heavy; ``torch_model`` (the project's PyTorch model) imports torch.
"""

from parcnetv2.conformance.protocol import BackendUnavailable, Unsupported

__all__ = ["BackendUnavailable", "Unsupported"]
