"""The Pipedream connection: one Pipedream token per connection (refresh windows, 401
retry), the HTTP client with bounded retries, and the parsed Pipedream values."""
