"""The one error every data module raises, on its own so that none of them imports another for it."""


class DatasetError(ValueError):
    """An unknown, missing or unreadable dataset; the message says what to download and run."""


__all__ = ["DatasetError"]
