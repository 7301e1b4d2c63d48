"""The Siamese flow network of the paper's section 5: a shared encoder (the configured
backbone), the two streams' coarsest maps stacked and fused by fully convolutional layers, an
FCN-8 style decoder of transposed convolutions with skip connections, a 2-channel flow at input
resolution, trained on the manifold's pseudo ground truth with a truncated Euclidean loss.

Modules: ``model`` (network, loss, checkpoint format), ``augment`` (consistent similarity
augmentation of image pairs and flows), ``train`` (training / fine-tuning loop with resumable
checkpoints); the trained network as a matcher is :class:`sopcorr.matchers.siamese.SiameseMatcher`.
"""
