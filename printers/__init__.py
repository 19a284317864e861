"""Slips on receipt printers: layout, ESC/POS bytes, PNG previews and printer connections.

(In the repository this is the top-level ``printers/`` folder; installed, it is
``holdshelf.printers``.)
"""
