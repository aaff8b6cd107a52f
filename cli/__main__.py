"""``python -m natsmesh_cli``: the same as the ``natsmesh`` console script."""

from natsmesh_cli.fastcall import main

main()
