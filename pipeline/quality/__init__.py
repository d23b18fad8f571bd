"""Quality: scoring functions and metric accumulators shared by the merge, evaluate and publish stages."""
