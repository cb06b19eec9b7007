"""The shared core: errors, the typed-record codec, files, escaping, units, progress, timing, the cache."""
