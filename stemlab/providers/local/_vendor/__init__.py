"""Third-party model code vendored because no installable package serves it
(see each subpackage's ``__init__`` for the source, version and licence)."""
