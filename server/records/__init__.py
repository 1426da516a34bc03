"""Records: finding agreed plans, exporting them in bulk, and the boards' outcome metrics."""
