"""The rupture classifier: training, evaluation and versioned artifacts with model cards."""
