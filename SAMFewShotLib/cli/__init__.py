"""The ``samfewshot`` command: main.py builds the parser and runs a subcommand (exit codes,
signals); arguments.py holds the argument groups and value parsers the subcommands share; every
other module here is one subcommand (``add_*_parser`` + ``cmd_*``).

Building the parser imports no torch: subcommands import their heavy modules inside ``cmd_*``.
"""
