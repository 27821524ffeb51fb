"""Discriminator regularisers: R1 and the WGAN-GP gradient penalty.

The engine calls them in float32 on the D step and multiplies the result by
``weight * every`` on every ``every``-th discriminator step (lazy regularisation, StyleGAN2;
D steps are counted, so ``train.d_steps`` does not change how often it runs);
they must not scale themselves. The gradient is taken with ``create_graph=True`` so the
penalty backpropagates to D's parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

import i2i

from .gan import Logits, logit_list


def input_gradient(discriminator: Callable[[Tensor], Logits], x: Tensor) -> Tensor:
    """d(sum of D's logits over all scales and positions)/dx, kept differentiable."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        total = torch.stack([o.float().sum() for o in logit_list(discriminator(x))]).sum()
        (grad,) = torch.autograd.grad(total, x, create_graph=True)
    return grad


def check_every(every: int) -> int:
    """The ``every`` option, refused as a recipe error unless an integer >= 1."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise i2i.RecipeError(f"every = {every!r}: expected an integer >= 1")
    return every


class R1(i2i.Regularizer):
    """R1 penalty on real pairs (Mescheder 2018): gamma/2 * E ||grad D(x_real)||^2.

    Options: ``gamma`` (default 10.0) is the penalty strength; ``every`` (default 16) applies
    it every 16 D steps, the engine scaling it by 16 then (StyleGAN2's lazy R1). Keep the
    recipe weight at 1 and tune gamma. The gradient is of D's logits summed over all patches
    and scales, so a PatchGAN's penalty grows with the number of patches (image size).
    """

    def __init__(self, gamma: float = 10.0, every: int = 16) -> None:
        super().__init__()
        if gamma < 0:
            raise i2i.RecipeError(f"gamma = {gamma}: expected a number >= 0")
        self.gamma = float(gamma)
        self.every = check_every(every)

    def forward(self, discriminator: Callable[[Tensor], Logits], real: Tensor, fake: Tensor) -> Tensor:
        grad = input_gradient(discriminator, real)
        return 0.5 * self.gamma * grad.square().flatten(1).sum(1).mean()


class GradientPenalty(i2i.Regularizer):
    """WGAN-GP penalty: E (||grad D(x_hat)|| - target)^2 on real/fake interpolates.

    ``x_hat = a * real + (1 - a) * fake`` with one ``a ~ U(0, 1)`` per image, drawn with
    ``torch.rand`` on the images' device from the global torch RNG, so the run's seed covers
    it. Set the recipe weight to the paper's lambda (10). Options: ``every`` (default 1) for
    lazy application; ``target`` (default 1.0) is the gradient norm aimed at (1 for a
    1-Lipschitz critic).
    """

    def __init__(self, every: int = 1, target: float = 1.0) -> None:
        super().__init__()
        self.every = check_every(every)
        self.target = float(target)

    def forward(self, discriminator: Callable[[Tensor], Logits], real: Tensor, fake: Tensor) -> Tensor:
        real, fake = real.detach(), fake.detach()
        a = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, dtype=real.dtype)
        grad = input_gradient(discriminator, torch.lerp(fake, real, a))
        norm = torch.linalg.vector_norm(grad.flatten(1), dim=1)
        return (norm - self.target).square().mean()
