"""ssp: Spectrum-to-Signal training for small reasoning language models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ssp")  # pyproject.toml's, the one place the version is written
except PackageNotFoundError:  # a source tree on PYTHONPATH, not installed
    __version__ = "0+unknown"
