"""Exit codes of the ``samfewshot`` command (README, DESIGN.md)."""

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 130
#: ``samfewshot batch``: at least one case failed (the others are written).
EXIT_CASES_FAILED = 3
