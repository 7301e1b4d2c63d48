# manifold stage rules (to be written)
