"""Connected inter-server sync: repositories replicated from an upstream Pallet over HTTP, in
the air-gap archive's stream format, pulled by the downstream or pushed by the upstream."""
