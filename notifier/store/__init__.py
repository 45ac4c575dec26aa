"""Everything kept in Redis besides the queues: records, campaigns, tokens, pauses, rates."""
