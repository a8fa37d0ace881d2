"""Training on compound datasets: config (pydantic), data (parts, weighted sampler, augmentation), engine (accelerate)."""
