"""Torch modules shared by strategies (experts, gates) and their trainer. Device-aware."""
