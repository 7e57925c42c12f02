"""`ssp sweep`: research ablations. A sweep file names base recipes, variants and seeds (`ssp.sweep.plan`); every
(variant, seed) runs through both stages with equal runs shared (`ssp.sweep.run`); the results are tables with
intervals over seeds, paired differences to a baseline, costs (`ssp.sweep.report`, `ssp.sweep.stats`) and plots
(`ssp.sweep.plots`). docs/ablations.md."""
