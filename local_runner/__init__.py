"""Local stand-ins for Azure: the docker and process job backends, the in-process Functions host,
Azurite management and the developer CLI (`python -m local_runner --help`).

Production code never imports this package; the app finds its backends by module path.
"""
