"""Pipeline stages: plain functions over Ray Datasets and typed config sections."""
