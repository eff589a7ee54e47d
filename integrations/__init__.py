"""Run-time adapters for unmodified upstream GAN codebases (the only place that knows their names)."""
