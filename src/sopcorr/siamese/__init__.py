"""The Siamese network of the paper's section 5, in two architectures (``siamese.architecture``).

* ``correlation`` (default): the correlation network: a shared encoder (the feature stage's
  backbone), a trainable descriptor head, matching inside the network (correlation + kernel
  soft-argmax), trained with a dense InfoNCE on the teacher's matches beside the paper's
  truncated Euclidean loss; on the CPU its head trains on the cached feature grids.
* ``paper``: the paper's network: the two streams' maps stacked, fused and decoded to a flow by
  an FCN-8 style decoder, trained with the truncated Euclidean loss on images.

Modules: ``correlation`` (the correlation network), ``losses`` (its InfoNCE and read-out loss),
``grids`` (teacher pairs on cached grids, flips), ``fit`` (its training), ``model`` (the paper's
network and loss), ``augment`` (the paper's similarity augmentation), ``train`` (the paper's
training), ``loop`` (the shared resumable optimisation loop), ``checkpoint`` (checkpoint I/O),
``settings`` (config -> typed settings), ``plots`` (loss curves), ``stage`` (the pipeline
steps). The trained networks as matchers: :class:`sopcorr.matchers.siamese.SiameseMatcher` (either
checkpoint) and :class:`sopcorr.matchers.network.NetworkMatcher` (the correlation network).
"""
