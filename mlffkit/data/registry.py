"""STUB: replaced by the data-layer helper."""


def available():
    raise NotImplementedError


def info(name):
    raise NotImplementedError
