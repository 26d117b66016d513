"""IAD-GPT Desktop: the Qt application."""
