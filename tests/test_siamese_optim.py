"""sopcorr.siamese.optim against torch.optim: the same parameters, bit for bit, at every step."""
from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from sopcorr.siamese.loop import lr_lambda
from sopcorr.siamese.optim import AdamW, LambdaSchedule


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5))


def _run(make_opt, make_sched, steps: int, skip_grad_of=None, seed: int = 0):
    """Train a small network ``steps`` steps; returns its parameters after every step and the
    learning rates used."""
    net = _net(seed)
    params = list(net.parameters())
    opt = make_opt(params)
    sched = make_sched(opt)
    g = torch.Generator().manual_seed(seed + 1)
    trace, lrs = [], []
    for k in range(steps):
        x = torch.randn(4, 3, 6, 6, generator=g)
        y = torch.randn(4, 5, generator=g)
        opt.zero_grad(set_to_none=True)
        loss = (net(x) - y).square().mean()
        loss.backward()
        if skip_grad_of is not None and k % 3 == 1:
            params[skip_grad_of].grad = None    # a parameter without a gradient at this step
        torch.nn.utils.clip_grad_norm_(params, 0.5)
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        trace.append([p.detach().clone() for p in params])
    return trace, lrs


@pytest.mark.parametrize("weight_decay,warmup,skip", [(0.05, 5, None), (0.0, 0, None), (0.01, 3, 2)])
def test_adamw_and_schedule_equal_torch_optim_bit_for_bit(weight_decay, warmup, skip):
    cfg = SimpleNamespace(warmup_steps=warmup, steps=40, min_lr_ratio=0.05)
    lr = 3e-3
    ref, ref_lrs = _run(lambda p: torch.optim.AdamW(p, lr=lr, weight_decay=weight_decay),
                        lambda o: torch.optim.lr_scheduler.LambdaLR(o, lr_lambda(cfg)), 40, skip)
    ours, our_lrs = _run(lambda p: AdamW(p, lr=lr, weight_decay=weight_decay),
                         lambda o: LambdaSchedule(o, lr_lambda(cfg)), 40, skip)
    assert our_lrs == ref_lrs
    for k, (a, b) in enumerate(zip(ref, ours)):
        for pa, pb in zip(a, b):
            assert torch.equal(pa, pb), f"step {k}: parameters differ"
    # the updates are not trivially equal: the parameters moved
    assert not torch.equal(ref[0][0], ref[-1][0])


def test_a_resumed_run_continues_exactly():
    cfg = SimpleNamespace(warmup_steps=4, steps=20, min_lr_ratio=0.1)
    full, _ = _run(lambda p: AdamW(p, lr=1e-2, weight_decay=0.02), lambda o: LambdaSchedule(o, lr_lambda(cfg)), 20)

    net = _net(0)
    params = list(net.parameters())
    opt = AdamW(params, lr=1e-2, weight_decay=0.02)
    sched = LambdaSchedule(opt, lr_lambda(cfg))
    g = torch.Generator().manual_seed(1)

    def step():
        x, y = torch.randn(4, 3, 6, 6, generator=g), torch.randn(4, 5, generator=g)
        opt.zero_grad()
        (net(x) - y).square().mean().backward()
        torch.nn.utils.clip_grad_norm_(params, 0.5)
        opt.step()
        sched.step()

    for _ in range(8):
        step()
    saved = dict(model={k: v.clone() for k, v in net.state_dict().items()}, opt=opt.state_dict(),
                 sched=sched.state_dict())
    # a fresh optimiser and schedule, loaded from the saved state, take the remaining steps
    net.load_state_dict(saved["model"])
    opt = AdamW(params, lr=1e-2, weight_decay=0.02)
    sched = LambdaSchedule(opt, lr_lambda(cfg))
    opt.load_state_dict(saved["opt"])
    sched.load_state_dict(saved["sched"])
    for _ in range(12):
        step()
    for pa, pb in zip(full[-1], params):
        assert torch.equal(pa, pb.detach())
    with pytest.raises(ValueError, match="sopcorr"):
        opt.load_state_dict(torch.optim.AdamW(params).state_dict())


def test_training_does_not_import_dynamo():
    """The reason for the module: building and stepping the optimiser loads no torch._dynamo
    (a fresh interpreter; torch.optim would load it)."""
    code = ("import sys, torch\n"
            "from sopcorr.siamese.optim import AdamW, LambdaSchedule\n"
            "m = torch.nn.Linear(3, 2); o = AdamW(m.parameters(), lr=0.1); s = LambdaSchedule(o, lambda k: 1.0)\n"
            "m(torch.ones(1, 3)).sum().backward(); o.step(); s.step()\n"
            "print('torch._dynamo' in sys.modules)\n"
            "torch.optim.SGD(m.parameters(), lr=0.1)\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["False", "True"]
