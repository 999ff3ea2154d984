"""sidrec.modeling."""
