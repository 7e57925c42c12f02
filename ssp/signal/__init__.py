"""The signal stage: GRPO with MaxEnt-guided advantage weighting (MGPO) and a stage curriculum."""
