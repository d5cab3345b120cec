"""Client-side service discovery: contracts, machinery, balancers and backends."""
