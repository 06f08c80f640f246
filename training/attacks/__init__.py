"""Adversarial attacks (paper eq. 1-4, 14, 15) and adaptive attacks on the whole defence."""
