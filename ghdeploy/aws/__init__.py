"""AWS services beyond the registry seam: the agent's fleet table (DynamoDB)."""
