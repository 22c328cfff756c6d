"""A toy recipe package used only by automodel-cli's tests."""
