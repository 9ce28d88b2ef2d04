"""mlxdraft: measure which speculative-decoding setup makes a local MLX model fastest."""

__version__ = "0.1.0"
