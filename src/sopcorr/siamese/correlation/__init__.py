"""The correlation network (``siamese.architecture: correlation``, the default; settings
``siamese.correlation``): ``net`` (the network, its read-out, its checkpoint record), ``data``
(training pairs on the feature stage's cached grids, flips), ``losses`` (dense InfoNCE and the
read-out's flow loss), ``train`` (its settings and its training step,
:class:`~sopcorr.siamese.correlation.train.CorrelationTraining`).
"""
