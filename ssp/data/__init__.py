"""Data: the embedded synthetic task and loaders for local files and hub datasets."""
