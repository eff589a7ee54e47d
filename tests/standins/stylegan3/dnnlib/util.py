import importlib


class EasyDict(dict):
    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name)

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        del self[name]


def construct_class_by_name(*args, class_name=None, **kwargs):
    module, name = class_name.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(*args, **kwargs)


def open_url(url):
    return open(url, "rb")
