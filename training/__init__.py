"""sidrec.training."""
