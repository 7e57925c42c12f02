"""The one generation path: sampling with transformers, the transformers and vLLM backends behind one interface,
the sampling presets, and data-parallel sampling over a launch's processes. Probing, evaluation, `ssp eval`,
`ssp generate` and `ssp data multipath` all generate through here."""
