"""Benchmarks of the onboarding service against a bare reference (``python -m bench.run``).

See bench/README.md for how to run them and what each figure means."""
