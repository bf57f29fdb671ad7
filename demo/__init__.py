"""Demo data that goes through the product's real paths (make run)."""
