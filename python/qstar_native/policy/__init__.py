"""Policies that propose next reasoning steps (see :mod:`.hf`). Importing this package imports
torch and transformers."""
