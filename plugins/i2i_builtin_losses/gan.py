"""GAN objectives (D and G halves) and pix2pixHD's feature matching.

Discriminator outputs arrive as a list of logit tensors, one per scale. Each half is the mean
over all elements of a scale's logits, then the mean over scales, so a multi-scale D weighs
its scales equally whatever their sizes. Computed in float32 even under autocast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

import i2i

Logits = Tensor | Sequence[Tensor]


def logit_list(outputs: Logits) -> list[Tensor]:
    """A discriminator's output as a list of logit tensors (a bare tensor is one scale)."""
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    if not outputs:
        raise ValueError("the discriminator returned no logits")
    return outputs


def mean_over_scales(term: Callable[[Tensor], Tensor], outputs: Logits) -> Tensor:
    """Mean of ``term`` over each scale's logits, averaged over scales."""
    return torch.stack([term(o.float()).mean() for o in logit_list(outputs)]).mean()


class GANLoss(i2i.AdversarialLoss):
    """Shared shape of the GAN objectives: element-wise terms for real, fake and G.

    ``decision_threshold`` is the logit at which D is undecided; the engine reports D's
    accuracy on real and fake pairs against it.
    """

    decision_threshold: float = 0.0

    def __init__(self) -> None:  # explicit, so the registry sees a factory with no options
        super().__init__()

    def real_term(self, d: Tensor) -> Tensor:
        raise NotImplementedError

    def fake_term(self, d: Tensor) -> Tensor:
        raise NotImplementedError

    def g_term(self, d: Tensor) -> Tensor:
        raise NotImplementedError

    def d_loss(self, d_real: list[Tensor], d_fake: list[Tensor]) -> Tensor:
        return mean_over_scales(self.real_term, d_real) + mean_over_scales(self.fake_term, d_fake)

    def g_loss(self, d_fake: list[Tensor]) -> Tensor:
        return mean_over_scales(self.g_term, d_fake)


class Vanilla(GANLoss):
    """Non-saturating GAN loss: D softplus(-d_r) + softplus(d_f), G softplus(-d_f).

    The binary cross-entropy on logits written with softplus, which is stable for any logit.
    G uses the non-saturating form (maximise log D(fake)), as every modern library does. No
    options.
    """

    def real_term(self, d: Tensor) -> Tensor:
        return F.softplus(-d)

    def fake_term(self, d: Tensor) -> Tensor:
        return F.softplus(d)

    def g_term(self, d: Tensor) -> Tensor:
        return F.softplus(-d)


class LSGAN(GANLoss):
    """Least-squares GAN loss (Mao 2017): D (d_r - 1)^2 + d_f^2, G (d_f - 1)^2.

    D's half is the plain sum of the real and fake terms, as in i2i's loss table; the pix2pix
    and CycleGAN reference code halves it (``(real + fake) * 0.5``, for every GAN mode), so
    D's loss here is twice theirs. Adam is insensitive to that constant; it only matters
    relative to a regulariser's weight. D is undecided at a logit of 0.5. No options.
    """

    decision_threshold = 0.5

    def real_term(self, d: Tensor) -> Tensor:
        return (d - 1).square()

    def fake_term(self, d: Tensor) -> Tensor:
        return d.square()

    def g_term(self, d: Tensor) -> Tensor:
        return (d - 1).square()


class WGAN(GANLoss):
    """Wasserstein critic loss: D E[d_f] - E[d_r], G -E[d_f]; pair it with gp.

    Needs a Lipschitz constraint on D to mean anything: pair it with ``gp`` (WGAN-GP, weight
    10) or spectral normalisation. No options.
    """

    def real_term(self, d: Tensor) -> Tensor:
        return -d

    def fake_term(self, d: Tensor) -> Tensor:
        return d

    def g_term(self, d: Tensor) -> Tensor:
        return -d


class Hinge(GANLoss):
    """Hinge GAN loss (SAGAN, BigGAN): D relu(1 - d_r) + relu(1 + d_f), G -E[d_f].

    D stops pushing logits it already classifies with a margin of 1. No options.
    """

    def real_term(self, d: Tensor) -> Tensor:
        return F.relu(1 - d)

    def fake_term(self, d: Tensor) -> Tensor:
        return F.relu(1 + d)

    def g_term(self, d: Tensor) -> Tensor:
        return -d


class RelativisticAverage(i2i.AdversarialLoss):
    """Relativistic average GAN loss (ESRGAN): D judges whether real looks *more* real than fake.

    With ``r = d_r - mean(d_f)`` and ``f = d_f - mean(d_r)`` (means over a scale's logits),
    D: (softplus(-r) + softplus(f)) / 2; G: (softplus(r) + softplus(-f)) / 2. As ESRGAN (and
    BasicSR) compute them: in D's half each mean is taken without gradient, and in G's half D's
    logits on the real pair are. ESRGAN weighs it 0.005 beside an L1 of weight 0.01 and a
    perceptual term. No options.
    """

    def __init__(self) -> None:
        super().__init__()

    def d_loss(self, d_real: list[Tensor], d_fake: list[Tensor]) -> Tensor:
        return self._halves(logit_list(d_real), logit_list(d_fake), for_d=True)

    def g_loss(self, d_fake: list[Tensor], d_real: list[Tensor]) -> Tensor:
        return self._halves([d.detach() for d in logit_list(d_real)], logit_list(d_fake), for_d=False)

    @staticmethod
    def _halves(d_real: list[Tensor], d_fake: list[Tensor], for_d: bool) -> Tensor:
        if len(d_real) != len(d_fake):
            raise ValueError(f"the discriminator gave {len(d_real)} scale(s) for the real pair and {len(d_fake)} for the fake")
        sign = 1.0 if for_d else -1.0  # D: real above fake's mean; G: the other way round
        per_scale = []
        for real, fake in zip(d_real, d_fake):
            real, fake = real.float(), fake.float()
            real_mean, fake_mean = (real.mean().detach(), fake.mean().detach()) if for_d else (real.mean(), fake.mean())
            r, f = real - fake_mean, fake - real_mean
            per_scale.append((F.softplus(-sign * r).mean() + F.softplus(sign * f).mean()) / 2)
        return torch.stack(per_scale).mean()


class FeatureMatching(i2i.FeatureMatchingLoss):
    """pix2pixHD feature matching: mean over D's layers of L1(fake, real features).

    Real features are detached, so only G learns from this term. Layers are the flat list a
    discriminator returns with ``return_features=True`` (all scales together), each weighed
    equally. pix2pixHD sums ``4 / (n_layers + 1)`` times each layer's L1 and averages over
    its D scales, which is 4x this mean: weight 40 here matches its ``lambda_feat = 10``.
    No options.
    """

    def __init__(self) -> None:
        super().__init__()

    def forward(self, real_features: list[Tensor], fake_features: list[Tensor]) -> Tensor:
        real_features, fake_features = list(real_features), list(fake_features)
        if len(real_features) != len(fake_features) or not real_features:
            raise ValueError(
                f"feature_matching: got {len(real_features)} real and {len(fake_features)} fake "
                "feature maps; the discriminator must return the same non-empty list for both"
            )
        return torch.stack([
            F.l1_loss(fake.float(), real.detach().float()) for real, fake in zip(real_features, fake_features)
        ]).mean()
