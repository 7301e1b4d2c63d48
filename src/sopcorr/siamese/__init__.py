"""The Siamese network of the paper's section 5, in two architectures (``siamese.architecture``),
one sub-package each with its network, its training data and its training step:

* ``correlation`` (default): the correlation network: a shared encoder (the feature stage's
  backbone), a trainable descriptor head, matching inside the network (correlation + kernel
  soft-argmax), trained with a dense InfoNCE on the teacher's matches beside the paper's
  truncated Euclidean loss; on the CPU its head trains on the cached feature grids.
  ``correlation.net`` (network), ``correlation.data`` (teacher pairs on cached grids, flips),
  ``correlation.losses``, ``correlation.train`` (its settings and training step).
* ``paper``: the paper's network: the two streams' maps stacked, fused and decoded to a flow by
  an FCN-8 style decoder, trained with the truncated Euclidean loss on images.
  ``paper.net`` (network and loss), ``paper.data`` (images and upsampled flows),
  ``paper.augment`` (similarity augmentation), ``paper.train`` (its settings and training step).

Shared by both: ``settings`` (the architectures' names, the loop's settings), ``encoder`` (the
backbone both streams share), ``data`` (a category's teacher and instances), ``loop`` (the
resumable optimisation loop), ``checkpoint`` (the checkpoint format), ``step`` (the training
step's skeleton), ``stage`` (the pipeline's entry: the configured architecture's step),
``plots`` (loss curves). The trained networks as matchers: one class per architecture in
:mod:`sopcorr.matchers` (``paper_network``, ``correlation_network``), chosen by the checkpoint
(:func:`sopcorr.matchers.networks.network_matcher`).
"""
