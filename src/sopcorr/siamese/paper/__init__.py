"""The paper's Siamese flow network (``siamese.architecture: paper``, settings ``siamese.paper``):
``net`` (the network, its loss, its checkpoint record), ``data`` (training pairs: images and the
teacher's flows at the network's input size), ``augment`` (the paper's similarity augmentation),
``train`` (its settings and its training step, :class:`~sopcorr.siamese.paper.train.PaperTraining`).
"""
