"""Scoring text: stream log-likelihoods, n-grams, the tuned mixture, realism."""
