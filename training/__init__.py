"""Offline pipeline: data sets, training loops, calibration, attacks and evaluation."""
