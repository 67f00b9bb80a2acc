"""Built-in email templates (package data)."""
