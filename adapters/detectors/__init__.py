"""Plugins of this kind; each module registers itself."""
