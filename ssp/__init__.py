"""ssp: Spectrum-to-Signal training for small reasoning language models."""

__version__ = "0.1.0"
