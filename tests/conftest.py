"""Collection order: the notebooks (the longest file) first, so that under `-n 2 --dist loadfile`
one worker runs them while the other works through the rest."""


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: 0 if item.path.name == "test_notebooks.py" else 1)
