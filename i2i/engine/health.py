"""Training-health checks: GANs fail quietly, so say so in plain words (once each)."""

from __future__ import annotations

import math


class HealthMonitor:
    """Reads the health figures logged every ``output.log_every`` steps and warns once per problem."""

    PATIENCE = 5  # consecutive logged steps before a warning

    def __init__(self) -> None:
        self.warned: set[str] = set()
        self.streak: dict[str, int] = {}

    def _persisting(self, key: str, condition: bool) -> bool:
        self.streak[key] = self.streak.get(key, 0) + 1 if condition else 0
        return self.streak[key] >= self.PATIENCE and key not in self.warned

    def check(self, step: int, values: dict[str, float]) -> list[str]:
        """Return new warnings for this logged step."""
        messages = []
        real, fake = values.get("d_acc_real"), values.get("d_acc_fake")
        if real is not None and fake is not None and self._persisting("d_won", real > 0.98 and fake > 0.98):
            self.warned.add("d_won")
            messages.append(
                f"step {step}: the discriminator tells real from fake almost perfectly "
                f"(accuracy {real:.0%} real, {fake:.0%} fake) for {self.PATIENCE} logs in a row, so the "
                "generator learns little from it; try a lower train.d.lr, a 'hinge' or 'lsgan' loss, or an r1 penalty"
            )
        for net in ("g", "d"):
            norm = values.get(f"grad_norm_{net}")
            if norm is None:
                continue
            key = f"explode_{net}"
            if (not math.isfinite(norm) or norm > 1e4) and key not in self.warned:
                self.warned.add(key)
                # G's adversarial gradient comes back through D: D's weights blow it up as often as G's
                lower = ("train.g.lr or train.d.lr (its adversarial gradient comes through the discriminator)"
                         if net == "g" and "lr_d" in values else f"train.{net}.lr")
                messages.append(
                    f"step {step}: {'generator' if net == 'g' else 'discriminator'} gradients are exploding "
                    f"(norm {norm:.3g}); lower {lower} or set train.{net}.clip_grad_norm"
                )
            if self._persisting(f"vanish_{net}", norm < 1e-7):
                self.warned.add(f"vanish_{net}")
                messages.append(
                    f"step {step}: {'generator' if net == 'g' else 'discriminator'} gradients have vanished "
                    f"(norm {norm:.3g}); it has stopped learning"
                )
        diversity = values.get("diversity")
        if diversity is not None and self._persisting("collapse", diversity < 0.05):
            self.warned.add("collapse")
            messages.append(
                f"step {step}: the generator's outputs are nearly identical across the batch "
                f"(diversity {diversity:.3f} of the targets'): mode collapse"
            )
        return messages
