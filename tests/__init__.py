"""rewardlab tests (a package, so that `tests.tiny` never resolves to another distribution's top-level `tests`)."""
