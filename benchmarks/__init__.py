"""QakeAPI's own benchmarks: the app contract, its peers, a picows load generator and one runner."""
