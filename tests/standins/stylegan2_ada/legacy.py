import pickle


def load_network_pkl(f):
    data = pickle.load(f)
    data.setdefault("augment_pipe", None)
    return data
