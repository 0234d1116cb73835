"""Training the shipped weights (the question tower) and measured experiments; only scripts/train.py imports it."""
