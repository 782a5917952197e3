"""dexecutor: an order execution engine for Solana DEX swaps with simulated venues."""

__version__ = "0.1.0"
