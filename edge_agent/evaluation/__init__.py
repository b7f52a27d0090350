"""Evaluation: measure what a policy reads correctly, on a site's cases or public VQA sets."""
