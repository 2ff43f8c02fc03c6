"""salnas_core.data: saliency datasets from files on disk to training batches.

readers/      one module per on-disk format, registered by name (READERS, get_reader)
ground_truth  fixation maps, Gaussian density maps, coordinate mapping under resizing
splits        deterministic train/val rules per dataset (SalNAS's OSIE split)
transforms    per-encoder normalisation (NORMALIZATIONS), paired augmentation
ingest        validate + preprocess a dataset into a versioned folder (manifest.json, report.json)
dataset       SaliencyDataset, make_loader, load_original_ground_truth
synthetic     a small synthetic dataset with a known fixation density
Layouts, sigmas and split rules: docs/datasets.md. Heavy imports stay inside the modules.
"""
