"""``assign demo``: a simulated fleet of tool servers against a real Assign service, end to end."""
