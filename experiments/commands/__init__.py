"""One module per ``promptopt`` sub-command: ``add_arguments(parser)`` and ``run(args) -> int``.

Modules import only the standard library at top level so ``promptopt --help`` stays fast;
the work is imported inside ``run``.
"""
