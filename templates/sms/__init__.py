"""Built-in sms templates (package data)."""
