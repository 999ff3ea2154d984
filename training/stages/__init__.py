"""The stages a run goes through, each a function taking the recipe sections it needs.

``pipeline.run`` calls them top to bottom: ``run_dir.start_run`` -> ``data`` (``load_sequential_data``)
-> ``codes`` (embed the catalogue, fit the RQ-VAE, build the tokenizer) -> ``models`` (the method's
model) -> ``fitting`` (``TrainingArguments``, ``SIDTrainer``, ``train``) -> ``results`` (test
ranking, popularity floor, metrics) -> ``run_dir.save_run`` (model, tokenizer, items, plot, recipe,
metrics, card). No stage imports the pipeline.
"""
