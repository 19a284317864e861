"""ILS connectors: ask the library's ILS whose hold an item fills (SIP2, Koha REST, FOLIO).

A connector answers with the card and the ILS's pickup location and nothing else: whatever
else the ILS sends (names, email, phone, titles) is dropped where it is parsed, never logged
and never put into an exception's message.
"""
