"""The pure domain core: shelf codes, patron pseudonyms, the hold lifecycle and retention rules.

Nothing in this package imports Flask, SQLAlchemy or a printer library.
"""
