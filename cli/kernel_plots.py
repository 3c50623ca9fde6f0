"""The oversized kernels of one block as a figure, like Fig. 3/4 of the paper's supplement (spec
clause 15.6): for a few channels, the vertical kernel k_h, the horizontal kernel k_w and the
2-D kernel they make, the outer product k_h k_w^T (clause 5.6: OC is that rank-1 kernel).

Requires matplotlib (the ``plot`` extra); importing this module does not.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from parcnetv2.errors import InputError

__all__ = ["oversized_kernels", "plot_kernels", "require_matplotlib"]


def require_matplotlib() -> Any:
    """matplotlib.pyplot with the non-interactive Agg backend, or InputError naming the extra."""
    try:
        import matplotlib
    except ImportError:
        raise InputError("plot-kernels needs matplotlib: pip install 'parcnetv2[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def oversized_kernels(model: Any, stage: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """(k_h (C, K), k_w (C, K)) of ``stages.{stage}.{block}.token_mixer.dwconv1`` of a reference
    Model; InputError naming the valid range for a block that does not exist."""
    depths = model.config.depths
    if not 0 <= stage < len(depths):
        raise InputError(f"--stage {stage}: the model has stages 0..{len(depths) - 1}")
    if not 0 <= block < depths[stage]:
        raise InputError(f"--block {block}: stage {stage} has {depths[stage]} blocks (0..{depths[stage] - 1})")
    weights = model.state_dict()
    prefix = f"stages.{stage}.{block}.token_mixer.dwconv1"
    return (
        np.asarray(weights[f"{prefix}.conv_h.weight"], np.float64)[:, 0, :, 0],
        np.asarray(weights[f"{prefix}.conv_w.weight"], np.float64)[:, 0, 0, :],
    )


def plot_kernels(model: Any, stage: int, block: int, out: str | PathLike, channels: int = 4) -> list[int]:
    """Write the figure to exactly ``out`` (format from its extension, PNG without one) and return
    the channels shown: the ``channels`` channels whose 2-D kernels have the largest norm
    ||k_h|| ||k_w||."""
    plt = require_matplotlib()
    k_h, k_w = oversized_kernels(model, stage, block)
    energy = np.linalg.norm(k_h, axis=1) * np.linalg.norm(k_w, axis=1)
    chosen = [int(c) for c in np.argsort(-energy, kind="stable")[: max(1, min(channels, len(energy)))]]
    taps = np.arange(k_h.shape[1]) - k_h.shape[1] // 2
    fig, axes = plt.subplots(len(chosen), 3, figsize=(10, 3 * len(chosen)), squeeze=False)
    for row, c in enumerate(chosen):
        ax_h, ax_w, ax_2d = axes[row]
        ax_h.plot(k_h[c], taps, color="tab:blue")
        ax_h.invert_yaxis()
        ax_h.set(title=f"channel {c}: vertical k_h", xlabel="weight", ylabel="tap (row offset)")
        ax_w.plot(taps, k_w[c], color="tab:orange")
        ax_w.set(title=f"channel {c}: horizontal k_w", xlabel="tap (column offset)", ylabel="weight")
        kernel = np.outer(k_h[c], k_w[c])
        limit = float(np.abs(kernel).max()) or 1.0
        image = ax_2d.imshow(
            kernel,
            cmap="RdBu_r",
            vmin=-limit,
            vmax=limit,
            extent=(taps[0] - 0.5, taps[-1] + 0.5, taps[-1] + 0.5, taps[0] - 0.5),
        )
        ax_2d.set(title=f"channel {c}: k_h k_w^T ({kernel.shape[0]}x{kernel.shape[1]})", xlabel="column", ylabel="row")
        fig.colorbar(image, ax=ax_2d, fraction=0.046)
    name = model.config.variant or "custom configuration"
    fig.suptitle(f"{name}, stages.{stage}.{block}.token_mixer.dwconv1: oversized kernels and their outer products")
    fig.tight_layout()
    try:
        fig.savefig(out, dpi=80, format=None if Path(out).suffix else "png")  # no ".png" appended
    except ValueError as exc:  # an unknown image format from the file extension
        raise InputError(f"cannot write {out}: {exc}") from None
    finally:
        plt.close(fig)
    return chosen
