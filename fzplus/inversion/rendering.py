"""Images of existing codes and edits of them, in any space (the inversion's results, or codes from a file)."""

from __future__ import annotations

import torch

import spaces
from spaces.base import LatentSpace, SpaceContext


def context_for(
    codes: dict[str, torch.Tensor], generator, *, truncation_psi: float = 1.0, truncation_cutoff: int | None = None
) -> SpaceContext:
    """The SpaceContext of existing codes: the base size is read off f."""
    base_size = codes["f"].shape[-1] if "f" in codes else None
    return SpaceContext(
        generator=generator, base_size=base_size, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff
    )


def render(
    codes: dict[str, torch.Tensor],
    generator,
    space: str | LatentSpace,
    *,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
) -> torch.Tensor:
    """Images [N, 3, R, R] (CPU) of codes in `space`; pass the truncation the codes were inverted with."""
    space = spaces.get(space)
    device = generator.w_avg.device
    codes = {k: v.to(device) for k, v in codes.items()}
    ctx = context_for(codes, generator, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
    with torch.no_grad():
        return space.render(codes, ctx).cpu()


def edit(
    codes: dict[str, torch.Tensor], space: str | LatentSpace, generator, direction, alpha: float
) -> dict[str, torch.Tensor]:
    """Codes moved by alpha * direction on the layers the space edits (`space.edited_layers`).

    direction: a [D] vector in the space's domain (`space.domain`: 'Z' for Z-type spaces, 'W' otherwise).
    Z-type codes are retracted to the sphere afterwards. S-type spaces move each style by alpha A_l n
    (A_l: the layer's affine map without its bias), which equals restyling from w + alpha n exactly,
    because the style is an affine function of w. Returned on the device of the input codes.
    """
    space = spaces.get(space)
    device = generator.w_avg.device
    home = next(iter(codes.values())).device
    direction = torch.as_tensor(direction, dtype=torch.float32).reshape(-1).to(device)
    dim = generator.z_dim if space.domain == "Z" else generator.w_dim
    if direction.shape[0] != dim:
        raise ValueError(
            f"space {space.name!r} edits in {space.domain}; "
            f"the direction must have {dim} entries, got {direction.shape[0]}"
        )
    moved = {k: v.to(device) for k, v in codes.items()}
    with torch.no_grad():
        moved = space.apply_direction(moved, direction, float(alpha), context_for(moved, generator))
    return {k: v.to(home) for k, v in moved.items()}
