"""Integrations with web frameworks. Each module imports its framework only for typing,
so importing hiercache never needs one installed."""
