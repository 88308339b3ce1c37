"""Helpers the tests share: tiny models, exact sequence laws, test cases, the whole-tree oracle."""
