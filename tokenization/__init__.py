"""sidrec.tokenization."""
