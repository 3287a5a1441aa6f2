"""The worker: the agent that runs assigned jobs, its executors and hardware detection."""
