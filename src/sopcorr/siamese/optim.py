"""AdamW and the loop's learning-rate schedule, without ``torch.optim``.

``torch.optim`` imports ``torch._dynamo`` when an optimiser is built and on its first step
(torch 2.14: ``Optimizer.__init__`` and ``step`` go through ``torch._disable_dynamo``), which costs
2-3 s at the start of every training job, on the critical path of the run (docs/PERFORMANCE.md,
"Training and fine-tuning"). These two classes compute what ``torch.optim.AdamW`` (its
single-tensor update, the CPU default, without AMSGrad) and ``torch.optim.lr_scheduler.LambdaLR``
compute, operation for operation and in the same order, so a training run's parameters are
bit-identical to theirs (``tests/test_siamese_optim.py`` checks every step against them).

Both duck-type what :class:`torch.amp.GradScaler` needs (``param_groups``, ``step``) and keep a
plain resumable state (``state_dict`` / ``load_state_dict``).
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch


class AdamW:
    """Adam with decoupled weight decay (Loshchilov & Hutter) over one group of parameters.

    params: the tensors to optimise; lr, weight_decay, betas, eps: as ``torch.optim.AdamW``.
    A parameter without a gradient at a step is skipped (no moment update, no decay), as there.
    """

    kind = "sopcorr.AdamW"

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-3, weight_decay: float = 1e-2,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        params = list(params)
        if not params:
            raise ValueError("AdamW got an empty parameter list")
        self.param_groups = [dict(params=params, lr=float(lr), betas=(float(betas[0]), float(betas[1])),
                                  eps=float(eps), weight_decay=float(weight_decay))]
        self.state: dict[int, dict[str, torch.Tensor]] = {}

    @property
    def params(self) -> list[torch.Tensor]:
        return self.param_groups[0]["params"]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        g = self.param_groups[0]
        lr, wd, eps = g["lr"], g["weight_decay"], g["eps"]
        beta1, beta2 = g["betas"]
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("AdamW does not support sparse gradients")
            st = self.state.get(i)
            if st is None:
                st = self.state[i] = dict(step=torch.tensor(0.0, dtype=torch.float32),
                                          exp_avg=torch.zeros_like(p, memory_format=torch.preserve_format),
                                          exp_avg_sq=torch.zeros_like(p, memory_format=torch.preserve_format))
            grad, exp_avg, exp_avg_sq, step_t = p.grad, st["exp_avg"], st["exp_avg_sq"], st["step"]
            step_t += 1
            if wd != 0:
                p.mul_(1 - lr * wd)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step = step_t.item()
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            step_size = lr / bias_correction1
            denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(eps)
            p.addcdiv_(exp_avg, denom, value=-step_size)

    def state_dict(self) -> dict:
        g = self.param_groups[0]
        return dict(kind=self.kind, state={i: dict(s) for i, s in self.state.items()},
                    group={k: v for k, v in g.items() if k != "params"})

    def load_state_dict(self, sd: dict) -> None:
        if sd.get("kind") != self.kind:
            raise ValueError("not a sopcorr.siamese.optim.AdamW state")
        self.param_groups[0].update(sd["group"])
        self.state = {}
        for i, s in sd["state"].items():
            p = self.params[int(i)]
            self.state[int(i)] = dict(step=s["step"].to(torch.float32).clone(),
                                      exp_avg=s["exp_avg"].to(p.device, p.dtype).clone(),
                                      exp_avg_sq=s["exp_avg_sq"].to(p.device, p.dtype).clone())


class LambdaSchedule:
    """The learning rate of ``optimizer`` at scheduler step ``k``: ``base_lr * f(k)``, set at
    construction (k = 0) and by each :meth:`step` (what ``LambdaLR`` does)."""

    def __init__(self, optimizer: AdamW, f: Callable[[int], float]):
        self.optimizer, self.f = optimizer, f
        g = optimizer.param_groups[0]
        g.setdefault("initial_lr", g["lr"])
        self.base_lr = g["initial_lr"]
        self.last_epoch = 0
        g["lr"] = self.base_lr * self.f(0)

    def step(self) -> None:
        self.last_epoch += 1
        self.optimizer.param_groups[0]["lr"] = self.base_lr * self.f(self.last_epoch)

    def state_dict(self) -> dict:
        return dict(kind="sopcorr.LambdaSchedule", last_epoch=self.last_epoch, base_lr=self.base_lr)

    def load_state_dict(self, sd: dict) -> None:
        if sd.get("kind") != "sopcorr.LambdaSchedule":
            raise ValueError("not a sopcorr.siamese.optim.LambdaSchedule state")
        self.last_epoch, self.base_lr = int(sd["last_epoch"]), float(sd["base_lr"])
        self.optimizer.param_groups[0]["lr"] = self.base_lr * self.f(self.last_epoch)
