pytest_plugins = ["tests.support.fixtures", "tests.k8sapi.fixtures"]
