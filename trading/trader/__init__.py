"""The trader process: start, loop and stop around the engine (see README.md)."""
