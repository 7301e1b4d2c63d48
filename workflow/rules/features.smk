# features stage rules (to be written)
