"""cxr: the command-line client of cxr-platform. Talks only HTTP to /api/v1; imports nothing of the platform."""

__version__ = "1.0.0"
