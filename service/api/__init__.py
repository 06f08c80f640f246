"""HTTP layer: routes per feature in ``routes/``, shared dependencies in ``deps``."""
