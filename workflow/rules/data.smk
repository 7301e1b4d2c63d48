# data stage rules (to be written)
