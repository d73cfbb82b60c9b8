"""The v1 HTTP API's contract: request and response bodies, API keys and rate limits."""
