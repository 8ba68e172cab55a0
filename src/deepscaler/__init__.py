"""deepscaler: RL on verifiable math rewards."""
__version__ = "0.1.0"
