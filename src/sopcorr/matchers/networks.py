"""The trained Siamese networks as matchers: one class per checkpoint architecture, chosen by
the checkpoint itself (:func:`network_matcher`, the ``siamese`` kind of the methods).

===============  ==================================================  ==============================
architecture     class (module)                                      params
===============  ==================================================  ==============================
``paper``        :class:`.paper_network.PaperNetworkMatcher`          :class:`.paper_network.PaperNetworkParams`
``correlation``  :class:`.correlation_network.CorrelationNetworkMatcher`  :class:`.correlation_network.CorrelationNetworkParams`
===============  ==================================================  ==============================

Both share :class:`NetworkMatcher`: the checkpoint read once
(:func:`sopcorr.siamese.checkpoint.read_checkpoint`), its architecture, backbone and input
size checked (the correlation network, convolutional throughout, runs at another input size
instead: another run's network on this run's images, ``evaluate.transfer_from``), the network
rebuilt in eval mode, images letterboxed as the network expects, and
each frame's descriptors cached on the frame. Every network matcher offers
``correspondence(src: Frame, tgt: Frame)``, ``descriptors(frame)``, ``match_images(a, b)``
and ``image_descriptors(img)``.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..geometry import FeatureGrid
from .base import Frame, Params

__all__ = ["NETWORK_KINDS", "NetworkParams", "NetworkMatcher", "network_matcher", "check_request", "share_encoders"]

#: checkpoint architecture -> the kind (a key of :data:`sopcorr.matchers.MATCHERS`) of its matcher
NETWORK_KINDS = {"paper": "paper_network", "correlation": "correlation_network"}


@dataclass(frozen=True)
class NetworkParams(Params):
    """What every network matcher's params hold: device: 'auto' | 'cpu' | 'cuda' (speed only);
    backbone, input_size: the run the network is evaluated in (another run's network:
    ``evaluate.transfer_from``); None: the checkpoint's own. A checkpoint of another backbone is
    a CheckpointError; another input size is one for the paper's network, while the correlation
    network runs at the given size (:attr:`NetworkMatcher.any_input_size`)."""

    device: str = "auto"
    backbone: str | None = None
    input_size: int | None = None

    SCHEMA: ClassVar[dict[str, str]] = {"device": "siamese.device"}


def check_request(path: Path, spec, backbone: str | None, input_size: int | None) -> None:
    """CheckpointError unless the checkpoint's network was trained with ``backbone`` and
    ``input_size`` (each when given)."""
    from ..siamese.checkpoint import CheckpointError

    if backbone is not None and spec.backbone != backbone:
        raise CheckpointError(
            f"{path}: checkpoint was trained with backbone '{spec.backbone}', not '{backbone}' "
            f"(train it with backbone.name: {backbone} or use a matching checkpoint)")
    if input_size is not None and spec.input_size != int(input_size):
        raise CheckpointError(f"{path}: checkpoint input size is {spec.input_size}, not {input_size}")


def _read(checkpoint):
    from ..siamese.checkpoint import Checkpoint, read_checkpoint

    return checkpoint if isinstance(checkpoint, Checkpoint) else read_checkpoint(checkpoint)


class NetworkMatcher:
    """A trained network of architecture ``architecture`` ready for inference (see the module
    docstring). checkpoint: ``model.pt`` / ``finetuned.pt`` (a path, or a checkpoint already
    read); the params' backbone / input_size, when set: the checkpoint must have been trained
    with them (CheckpointError otherwise), except that a network whose class has
    :attr:`any_input_size` is rebuilt to run at ``input_size``."""

    name = "network"
    architecture = ""
    params_class = NetworkParams
    #: the network has a read-out that can take a location prior (``readout(objective, ...)``)
    soft_readout = False
    #: the network runs at any input size (encoder and head convolutional, the read-out on any
    #: grid): a requested input size rebuilds the encoder for it instead of failing the check
    any_input_size = False

    def __init__(self, params: NetworkParams | None = None, checkpoint=None):
        from ..device import resolve_device
        from ..siamese.checkpoint import CheckpointError, model_from_checkpoint
        from ..siamese.encoder import normalisation

        if checkpoint is None:
            raise TypeError(f"{type(self).__name__} needs a checkpoint")
        self.params = params if params is not None else self.params_class()
        self.device = resolve_device(self.params.device)
        backbone, input_size = self.params.backbone, self.params.input_size
        ck = _read(checkpoint)
        if ck.architecture != self.architecture:
            raise CheckpointError(f"{ck.path}: a '{ck.architecture}' network, not a '{self.architecture}' one")
        if self.any_input_size and input_size is not None and int(input_size) != int(ck.spec.input_size):
            ck = replace(ck, spec=replace(ck.spec, input_size=int(input_size)))  # the encoder rebuilt for the size
        check_request(ck.path, ck.spec, backbone, input_size)
        self.path, self.spec, self.size = ck.path, ck.spec, int(ck.spec.input_size)
        self.model = model_from_checkpoint(ck, device=self.device).eval()
        self.mean, self.std = normalisation(self.backbone())

    def backbone(self):
        """The module whose spec says how images are normalised (the network's encoder)."""
        return self.model.encoder

    def _prep(self, img: np.ndarray) -> tuple:
        """(1, 3, S, S) normalised tensor on the device and the image's Letterbox."""
        from ..features.extract import preprocess

        x, lb = preprocess(np.asarray(img), self.size, self.mean, self.std)
        return x[None].to(self.device), lb

    #: the job's other network matchers whose encoder is this one's (:func:`share_encoders`)
    encoder_peers: tuple = ()

    def descriptor_key(self) -> tuple:
        """The frame-cache key of this network's descriptors of a frame's image (its class,
        checkpoint and input size: one network matcher built again from the same checkpoint
        shares them)."""
        return (f"{self.name}.descriptors", str(self.path), self.size)

    def descriptors(self, frame: Frame) -> tuple[np.ndarray, FeatureGrid]:
        """The network's dense descriptors of the frame's image (:meth:`image_descriptors`),
        cached on the frame. With :attr:`encoder_peers`, the image's one encoder pass also
        gives every peer its descriptors of the frame (:meth:`describe_with_peers`)."""
        key = self.descriptor_key()
        if key not in frame.cache and self.encoder_peers:
            self.describe_with_peers(frame)
        return frame.cached(key, lambda: self.image_descriptors(frame.image))

    def describe_with_peers(self, frame: Frame) -> None:
        """Cache this matcher's and its peers' descriptors of the frame from one encoder pass
        (the architectures that can: :class:`~.correlation_network.CorrelationNetworkMatcher`)."""

    def same_encoder(self, other) -> bool:
        """Whether ``other``'s encoder computes exactly what this one's does from the same
        image (never, unless the architecture says how to tell)."""
        return False

    def store_descriptors(self, frame: Frame) -> np.ndarray | None:
        """(H, W, D) descriptors of the frame's stored feature grid when that grid is this
        network's encoder output (no image pass needed), else None."""
        return None

    def image_descriptors(self, img: np.ndarray) -> tuple[np.ndarray, FeatureGrid]:
        raise NotImplementedError


def share_encoders(matchers) -> None:
    """Make the network matchers among ``matchers`` (a network matcher, or a matcher with one as
    ``.network``) whose encoders are identical (:meth:`NetworkMatcher.same_encoder`: the same
    architecture, input size, normalisation and encoder weights, e.g. ``model.pt`` and
    ``finetuned.pt`` of a correlation network trained on the frozen backbone) peers: a frame's
    image is then encoded once for all of them (:meth:`NetworkMatcher.descriptors`)."""
    nets: list = []
    for m in matchers:
        for net in (m, getattr(m, "network", None)):
            if isinstance(net, NetworkMatcher) and all(net is not n for n in nets):
                nets.append(net)
    for net in nets:
        peers = tuple(o for o in nets if o is not net and o.descriptor_key() != net.descriptor_key()
                      and net.same_encoder(o))
        net.encoder_peers = peers


def network_matcher(checkpoint, params=None) -> NetworkMatcher:
    """The matcher of a trained network: the class of the architecture the checkpoint records
    (:data:`NETWORK_KINDS`; the file is read once), with the :class:`NetworkParams` fields of
    ``params`` (device, backbone, input_size; any params object that has them; None: the
    defaults)."""
    from . import matcher_class

    ck = _read(checkpoint)
    cls = matcher_class(NETWORK_KINDS[ck.architecture])
    shared = {f.name: getattr(params, f.name) for f in fields(NetworkParams)} if params is not None else {}
    return cls(params=cls.params_class(**shared), checkpoint=ck)
