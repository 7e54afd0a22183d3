"""STUB: replaced by the data-layer helper."""


def load(name_or_path, **kwargs):
    raise NotImplementedError


def save(dataset, path, format=None, overwrite=False):
    raise NotImplementedError
