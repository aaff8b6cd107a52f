"""The ``natsmesh`` command line (installed as the package ``natsmesh_cli``)."""
