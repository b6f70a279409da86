"""The store capability: the contract suite (every backend) and its host functions."""
