# flow stage rules (to be written)
