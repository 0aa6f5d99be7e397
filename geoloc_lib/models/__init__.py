"""Models and the ``create_model`` registry."""
