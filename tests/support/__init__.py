"""What the tests share: fixtures, sidecars and processes, certificates, waiting, requests."""
