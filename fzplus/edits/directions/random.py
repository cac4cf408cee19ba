"""Random directions n ~ N(0, sigma^2 I_D) (paper §4, Fig. 3): a robustness probe, not a semantic edit.

The vectors are NOT normalised: their length (about sigma sqrt(D)) is the edit strength per unit step.
Which sigma: the paper's text says "a Gaussian distribution with a mean of 0 and a variance of 0.04",
i.e. sigma = 0.2; the authors' code (BDInvert/edit_zp_rand.py) draws `torch.normal(mean=0, std=0.04,
size=(1, 512))`, i.e. sigma = 0.04. The figures come from the code, so the default is
SIGMA_AUTHORS_CODE; SIGMA_PAPER_TEXT reproduces the text. Each draw is one direction shared by every
edited layer. The vectors do not depend on `domain` (same seed, same vectors), so Z- and W-type spaces
can be probed with the very same draw; `domain` only labels the record.
"""

from __future__ import annotations

import torch

from fzplus.edits.directions import DOMAINS, Directions, register_direction_finder

SIGMA_AUTHORS_CODE = 0.04  # std 0.04, BDInvert/edit_*_rand.py
SIGMA_PAPER_TEXT = 0.2  # variance 0.04, paper §4 "Editing quality comparison"


def find_random_directions(
    *, count: int = 1, dim: int = 512, sigma: float = SIGMA_AUTHORS_CODE, seed: int = 0, domain: str = "Z"
) -> Directions:
    """`count` independent draws n_k ~ N(0, sigma^2 I_dim) from a seeded CPU generator -> vectors [count, dim]."""
    if count < 1 or dim < 1:
        raise ValueError(f"random directions: count and dim must be >= 1, got count={count}, dim={dim}")
    if not sigma > 0:
        raise ValueError(f"random directions: sigma must be > 0, got {sigma}")
    if domain not in DOMAINS:
        raise ValueError(f"random directions: domain must be one of {DOMAINS}, got {domain!r}")
    g = torch.Generator().manual_seed(seed)
    vectors = torch.randn(count, dim, generator=g, dtype=torch.float64) * sigma  # [count, dim]
    return Directions(
        vectors=vectors.float(),
        domain=domain,
        names=tuple(f"random_{k:03d}" for k in range(count)),
        method="random",
        unit=False,
        diagnostics=dict(
            sigma=float(sigma),
            seed=int(seed),
            sample_std=vectors.std(dim=1).tolist(),
            sigma_conventions=dict(authors_code=SIGMA_AUTHORS_CODE, paper_text=SIGMA_PAPER_TEXT),
        ),
    )


register_direction_finder(
    name="random",
    find=find_random_directions,
    description="random Gaussian directions N(0, sigma^2 I), unnormalised (paper Fig. 3)",
)
