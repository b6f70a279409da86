"""The Arcana guest SDK for Python plugins (built into WebAssembly components by `arcana plugin build`)."""
