import pickle


def load_network_pkl(f):
    return pickle.load(f)
