"""Cross-cutting pieces every layer uses: settings, clock, secrets, logging, rate limits."""
