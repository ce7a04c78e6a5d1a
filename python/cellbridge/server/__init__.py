"""The py4j server QuPath talks to: requests, jobs and results as in docs/protocol.md."""
