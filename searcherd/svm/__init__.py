"""svm package."""
