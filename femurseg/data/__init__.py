"""Data layer: manifest, folds, preprocessing, augmentation, data module, synthetic cohort."""
