"""Variational Best-of-N."""
