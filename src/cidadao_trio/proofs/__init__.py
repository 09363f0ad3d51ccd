"""Tamper-evident investigations (PROTOCOL.md §11), the pure parts: canonical bytes, the
hash chain over an investigation's events, Ed25519 signing and verifying, key files.

Nothing here does network or store I/O or reads a clock; paths and texts are passed in.
``investigations.proving`` wires the chain where the engine publishes.
"""
