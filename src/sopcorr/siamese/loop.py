"""The optimisation loop both Siamese architectures share.

* AdamW; learning rate: linear warm-up over ``warmup_steps`` steps, then cosine decay to
  ``min_lr_ratio * lr`` (:func:`lr_lambda`). Both from :mod:`sopcorr.siamese.optim`, which
  computes what ``torch.optim.AdamW`` and ``LambdaLR`` compute, bit for bit, without the 2-3 s
  import of ``torch._dynamo`` that ``torch.optim`` costs every training job.
* Step ``k`` gets a generator seeded with ``(seed, k, salt)`` (:func:`step_generator`) for its
  batch and augmentation, so a run resumed from a checkpoint takes exactly the same steps as an
  uninterrupted one.
* Every ``checkpoint_every`` steps a resumable state (model, optimiser, scheduler, scaler,
  generator states, history) goes to ``state_path``; a later start with the same ``record``
  continues from it; the final checkpoint goes to ``out_path`` and the state file is removed.
* Mixed precision on CUDA (the step function decides what runs under autocast; the loop scales
  the loss with a ``GradScaler``); float32 on the CPU.
"""
from __future__ import annotations

import json
import logging
import math
import random
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .optim import AdamW, LambdaSchedule

log = logging.getLogger("sopcorr.siamese")


def lr_lambda(cfg):
    """Multiplier of the base lr at scheduler step ``k``: linear warm-up then cosine.
    ``cfg`` has ``steps``, ``warmup_steps`` and ``min_lr_ratio``."""
    W, N, floor = cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio

    def f(k: int) -> float:
        if W > 0 and k < W:
            return (k + 1) / W
        t = (k - W) / max(1, N - W)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f


def step_generator(seed: int, step: int, salt: str = "") -> torch.Generator:
    """The generator of step ``step``: batch choice and augmentation of that step."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step) * 7919 + zlib.crc32(salt.encode())) % (2**63))


def run_loop(model: torch.nn.Module, step_loss: Callable[[int, torch.Generator], torch.Tensor], cfg,
             out_path: str | Path, spec: dict | None, device: torch.device, extra: dict | None = None,
             salt: str = "train", state_path: str | Path | None = None, resume: bool = True,
             progress: bool = True, stop_after: int | None = None, desc: str = "siamese",
             on_step: Callable[[int, float], None] | None = None) -> list[float]:
    """Optimise ``model`` (its ``trainable_parameters(cfg.freeze_encoder)``, in training mode
    with its encoder's batch-norm statistics frozen: ``set_mode``) on ``device`` for
    ``cfg.steps`` steps of ``step_loss(step, generator)`` (a scalar loss); write the final
    checkpoint (``model``, ``spec``, ``step``, ``config`` = the run's record, ``history``,
    optimiser states) to ``out_path``. Returns the per-step losses of the whole run (resumed
    steps included).

    cfg: a :class:`~sopcorr.siamese.settings.LoopSettings`. The record ``{train: cfg.to_dict(),
    spec, extra, salt}`` identifies the run: state_path (default ``<out_path>.state.pt``) holds
    the resumable state, continued when its record equals this one (resume); extra: what else
    identifies the run (the training data, the initial checkpoint); salt: the stage ('train',
    'finetune'), part of every step's seed. stop_after: stop (after checkpointing) once this
    step is reached -- simulates a kill in tests. on_step(step, loss): called after every step
    (e.g. for logging)."""
    model.to(device).set_mode(True, cfg.freeze_encoder)
    params = list(model.trainable_parameters(cfg.freeze_encoder))
    record = dict(train=cfg.to_dict(), spec=spec, extra=extra or {}, salt=salt)
    out_path = Path(out_path)
    state_path = Path(state_path) if state_path else out_path.with_name(out_path.name + ".state.pt")
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % (2**32))
    random.seed(cfg.seed)
    opt = AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = LambdaSchedule(opt, lr_lambda(cfg))
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start, history = 0, []
    key = lambda r: json.dumps(r, sort_keys=True, default=str)  # noqa: E731
    if resume and state_path.is_file():
        st = load_checkpoint(state_path)
        if key(st.get("config")) == key(record) and st["optimizer"].get("kind") != AdamW.kind:
            log.warning("ignoring %s: its optimiser state is torch.optim's (an earlier version)", state_path)
        elif key(st.get("config")) == key(record):
            model.load_state_dict(st["model"])
            opt.load_state_dict(st["optimizer"])
            sched.load_state_dict(st["scheduler"])
            scaler.load_state_dict(st["scaler"])
            start, history = int(st["step"]), list(st["history"])
            set_rng_state(st["rng"])
            log.info("resuming from %s at step %d", state_path, start)
        else:
            log.warning("ignoring %s: it was written with other settings", state_path)

    def snapshot(step: int) -> dict:
        return dict(model=model.state_dict(), spec=spec, optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                    scaler=scaler.state_dict(), step=step, config=record, rng=rng_state(), history=history)

    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=start, disable=not progress, desc=f"{desc} {salt}",
               mininterval=2.0, dynamic_ncols=True)
    for step in range(start, cfg.steps):
        loss = step_loss(step, step_generator(cfg.seed, step, salt))
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        scaler.step(opt)
        scaler.update()
        sched.step()
        history.append(float(loss.detach()))
        if on_step is not None:
            on_step(step, history[-1])
        bar.update(1)
        bar.set_postfix(loss=f"{history[-1]:.3f}", refresh=False)
        done = step + 1
        if done < cfg.steps and (done % cfg.checkpoint_every == 0 or done == stop_after):
            save_checkpoint(state_path, snapshot(done))
        if stop_after is not None and done >= stop_after and done < cfg.steps:
            bar.close()
            return history
    bar.close()
    save_checkpoint(out_path, snapshot(cfg.steps))
    state_path.unlink(missing_ok=True)
    return history
