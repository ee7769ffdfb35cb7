"""express_relay package."""
