"""Quantal synaptic dilution (QSD) and dropout-family regularisers, with the experiments that test them."""

__version__ = "0.1.0"
