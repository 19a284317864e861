"""The hold-shelf workflow as use cases (one module each) over one base of shared queries;
:class:`holdshelf.service.HoldService` puts them together."""
