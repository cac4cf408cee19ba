"""IDInvert (Zhu et al. 2020, genforce/idinvert): W+ codes that start at the domain-guided encoder's E(x) and
pay the domain term lambda_domain * mean((w - E(G(w)))^2) (fzplus.encoders.domain; IDInvert: 2.0; config
inversion.idinvert) during the
optimisation. The image loss, steps and learning rate are the run's, as for every space, so that the row
differs from W+ only by IDInvert's two ingredients (IDInvert itself: 100 steps of Adam 0.01 on MSE +
5e-5 x VGG16 conv4_3 feature MSE). Edits, truncation (none) and generated samples' codes are W+'s.

Defined for every architecture: IDInvert itself inverts StyleGAN1 generators. The encoder must be the one trained for
the run's generator. A file made for another one is refused by its loader (generator config and fingerprint,
fzplus.encoders.domain.load_domain_encoder); an encoder passed as a module is checked here by the w_avg it answers
around (`w_offset`, set from its generator's), since a StyleGAN2 encoder's codes have the very shape a StyleGAN1 of
the same size and width needs.
"""

from dataclasses import dataclass

import torch

from fzplus.generator.interface import ARCHITECTURES
from fzplus.settings import setting

from ._families import WSpace


@dataclass(frozen=True)
class DomainSettings:
    """IDInvert's domain regulariser"""

    lambda_domain: float = setting(
        2.0, minimum=0, description="weight of IDInvert's domain term mean((w - E(G(w)))^2) (IDInvert: 2.0)"
    )


class DomainRegularisedSpace(WSpace):
    """W+ started by an encoder of W+ and regularised to stay where that encoder maps its own images."""

    encoder_kind = "w-plus"
    settings_key, settings_class = "idinvert", DomainSettings

    def init_codes(self, targets, ctx, *, image_seeds, encoder=None):
        from fzplus.encoders.domain import encode_ws  # plugins stay importable without the encoder module

        if encoder is None:
            raise ValueError(
                f"{self.name} starts from its W+ encoder: pass encoder= (fzplus.encoders.domain.load_domain_encoder; "
                "the pipeline's rule idinvert_encoder)"
            )
        G = ctx.generator
        if not torch.allclose(encoder.w_offset.to(G.w_avg), G.w_avg, rtol=1e-5, atol=1e-6):
            raise ValueError(
                f"{self.name}: the encoder was built for another generator: its codes centre on another w_avg than "
                f"this {ARCHITECTURES[G.architecture]} generator's (a StyleGAN2's encoder cannot start a StyleGAN1 "
                "inversion, nor the other way round); train one for this generator "
                "(fzplus.encoders.domain_training.train_domain_encoder)"
            )
        w = encode_ws(encoder, targets).to(targets.dtype)
        expected = (targets.shape[0], *self.code_shape(ctx))
        if tuple(w.shape) != expected:
            raise ValueError(
                f"{self.name}: the encoder returned codes {tuple(w.shape)}; this generator needs {list(expected)}"
            )
        return {"w": w}

    def regularizer(self, codes, ctx):
        from fzplus.encoders.domain import domain_distance

        if ctx.encoder is None:
            raise ValueError(f"{self.name}'s domain term needs the encoder in the context (SpaceContext(encoder=...))")
        return self.settings_for(ctx.settings).lambda_domain * domain_distance(ctx.encoder, ctx.generator, codes["w"])


SPACE = DomainRegularisedSpace(
    name="IDInvert",
    slug="idinvert",
    per_layer=True,
    uses_base_code=False,
    description="W+ from the domain-guided encoder E(x), regularised by mean((w - E(G(w)))^2) (IDInvert)",
)
