"""Local mode: the bundle's own template, handlers and state machines on an in-process AWS emulator."""
