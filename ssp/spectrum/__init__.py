"""The spectrum stage: multi-path SFT, per-subdomain pass@k probing, checkpoint selection and fusion."""
