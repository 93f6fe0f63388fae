"""The credential service: account cache with single flight, source-to-Pipedream
mapping, tenant checks, listing and page tokens."""
