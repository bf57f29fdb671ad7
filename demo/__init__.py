"""The demo: data and a loader that go through the product's real paths (``make run``), the demo
model endpoint, and demo traffic."""
