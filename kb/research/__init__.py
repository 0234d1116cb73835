"""Legal research tools over an index: version comparison (新旧对照), cited-by (法条联想), law and version lookup."""
