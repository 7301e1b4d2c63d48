# siamese stage rules (to be written)
