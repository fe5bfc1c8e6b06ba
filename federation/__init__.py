"""The peer protocol between co-op instances (arrives with the federation issue)."""
