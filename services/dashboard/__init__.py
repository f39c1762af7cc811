"""The web dashboard: reads the scheduler, registry and results services over gRPC; owns nothing."""
