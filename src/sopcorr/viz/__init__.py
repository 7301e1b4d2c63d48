"""Figures: contact sheets, correspondence colour maps, keypoint predictions, bars, convergence."""
