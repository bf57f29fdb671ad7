"""Portfolio: cost tiers, tasks, routing policies, change requests and the policy feed."""
