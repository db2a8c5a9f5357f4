def f():
    return __file__
