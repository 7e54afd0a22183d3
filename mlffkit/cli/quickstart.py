"""STUB."""


def register(sub):
    pass
