"""HF models (placeholder)."""
