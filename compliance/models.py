"""Compliance: data classifications, certifications and the model x classification matrix."""
