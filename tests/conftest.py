"""Collection order: the longest files first (the notebooks, the paper accounts), so that under
`-n 2 --dist loadfile` each worker starts on one and the short files fill in at the end."""


# The longest files first, measured on one worker (about 185, 240, 85, 140, 80, 50, 25 and 25 s):
# the workers start on the first two, then take the third and fourth (the pairs come out about
# even), then the rest as they free up; a long file that starts last would leave the other worker
# idle at the end. pytest-xdist would sort the files by their number of tests instead;
# `pytest_configure` keeps this order.
LONGEST = ("test_notebooks.py", "test_paper.py", "test_finteam.py", "test_shared_data.py", "test_sweep.py", "test_tradexpert.py",
           "test_model_lookahead.py", "test_broker.py")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: LONGEST.index(item.path.name) if item.path.name in LONGEST else len(LONGEST))


def pytest_configure(config):
    """The session's own $TRADESIM_HOME (a test or file may set its own): caches, stored models and
    decision passes of the user's home, or of an earlier run of the suite, never answer a test.
    Under pytest-xdist each worker computes on one thread (torch, and the BLAS and OpenMP pools of
    the processes it starts: notebook kernels, CLI children): two workers on two cores, instead of
    four threads fighting over them."""
    import os
    import tempfile

    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist: files in LONGEST's order, not by their number of tests
        config.option.loadscopereorder = False
    config.tradesim_home = tempfile.mkdtemp(prefix="tradesim-tests-home-")
    os.environ["TRADESIM_HOME"] = config.tradesim_home
    # Ray, in this process and every one it starts: nodes keep their loopback address (else Ray
    # swaps 127.0.0.1 for the external interface), no usage statistics, one authentication mode.
    for name, value in (("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0"), ("RAY_USAGE_STATS_ENABLED", "0"), ("RAY_AUTH_MODE", "disabled")):
        os.environ[name] = value
    # 200 bootstrap resamples instead of 2000 for runs that do not set them: the intervals are
    # computed the same way, an order of magnitude faster (the evidence's own tests set theirs).
    os.environ["TRADESIM_SIG_REPS"] = "200"
    if os.environ.get("PYTEST_XDIST_WORKER"):
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(name, "1")
        import torch

        torch.set_num_threads(1)


def pytest_unconfigure(config):
    import shutil

    if getattr(config, "tradesim_home", None):
        shutil.rmtree(config.tradesim_home, ignore_errors=True)
