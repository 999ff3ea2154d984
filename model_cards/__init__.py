"""sidrec.model_cards."""
