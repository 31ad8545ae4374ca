"""Data: prompt templates, dataset handlers, preprocessing to indexed datasets, prompt loader."""
