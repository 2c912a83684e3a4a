"""Scones Unlimited core: the torch-free domain code shared by training, the model server and the Lambdas."""

__version__ = "0.1.0"
