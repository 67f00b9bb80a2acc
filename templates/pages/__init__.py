"""Built-in pages templates (package data)."""
