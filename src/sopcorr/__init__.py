"""sopcorr: dense semantic object correspondence from classification CNNs."""
__version__ = "0.1.0"
