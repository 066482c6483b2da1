"""The coordinator: drives profiling over the fleet and turns measurements into latency models."""
