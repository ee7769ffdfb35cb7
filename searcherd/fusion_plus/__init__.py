"""fusion_plus package."""
