"""A deterministic simulator of the whole network (issue 10): the three services in one process over a simulated
broker and clock, all driven by one seed; random workloads and faults; the invariants checked after every step."""
